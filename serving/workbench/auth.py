"""Staff accounts, sign-in and server-side sessions.

Passwords are hashed with Argon2id (argon2-cffi's defaults). A session is a
random token in an HttpOnly cookie; the database keeps only its SHA-256, with
the user, its expiry and the session's CSRF token. After
:data:`MAX_FAILED_SIGN_INS` failed sign-ins in a row an account is locked for
:data:`LOCK_MINUTES`, whatever password is sent meanwhile.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from relapse_risk.features.errors import RelapseRiskError
from sqlalchemy import select
from sqlalchemy.orm import Session

from .db import ROLES, SecurityEvent, SessionRecord, User, utcnow

MAX_FAILED_SIGN_INS = 5
LOCK_MINUTES = 15
SESSION_HOURS = 12
AREA_DIGITS = {"county": 6, "township": 9}

log = logging.getLogger("relapse_risk.workbench")
_hasher = PasswordHasher()
# A hash to verify against when the user does not exist, so that an unknown name
# costs the same time as a wrong password and timing does not tell names apart.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))


class UserError(RelapseRiskError):
    """A user cannot be added or changed as asked; the message says why."""


@dataclass(frozen=True)
class Staff:
    """The signed-in user, as the pages and the API see it."""

    id: int
    username: str
    role: str
    area_code: str

    def may_see(self, township_code: str) -> bool:
        """County analysts see their county's townships; township staff only their own."""
        return township_code.startswith(self.area_code)


@dataclass(frozen=True)
class SignedIn:
    staff: Staff
    token: str
    csrf_token: str


def add_user(session: Session, username: str, role: str, area_code: str, password: str) -> User:
    if not re.fullmatch(r"[A-Za-z0-9_.@-]{2,100}", username):
        raise UserError(f"user name {username!r}: 2-100 letters, digits or _.@- only")
    if role not in ROLES:
        raise UserError(f"role {role!r}: one of {', '.join(ROLES)}")
    if not re.fullmatch(rf"\d{{{AREA_DIGITS[role]}}}", area_code):
        raise UserError(f"area {area_code!r}: a {role} code has {AREA_DIGITS[role]} digits")
    if len(password) < 8:
        raise UserError("password: at least 8 characters")
    if session.scalars(select(User).where(User.username == username)).first() is not None:
        raise UserError(f"user {username!r} exists already")
    user = User(
        username=username,
        password_hash=_hasher.hash(password),
        role=role,
        area_code=area_code,
        active=True,
        failed_logins=0,
        created_at=utcnow(),
    )
    session.add(user)
    session.flush()
    return user


def set_active(session: Session, username: str, active: bool) -> User:
    user = session.scalars(select(User).where(User.username == username)).first()
    if user is None:
        raise UserError(f"no user {username!r}")
    user.active = active
    if not active:
        for record in session.scalars(select(SessionRecord).where(SessionRecord.user_id == user.id)):
            record.ended = True
    session.flush()
    return user


def record_event(session: Session, kind: str, username: str, detail: str) -> None:
    session.add(SecurityEvent(at=utcnow(), kind=kind, username=username, detail=detail))


def sign_in(session: Session, username: str, password: str) -> SignedIn | None:
    """A new session for a right name and password of an active, unlocked user; None otherwise.

    Every failure is recorded; the caller commits.
    """
    now = utcnow()
    user = session.scalars(select(User).where(User.username == username)).first()
    if user is None:
        _verify(_DUMMY_HASH, password)
        record_event(session, "login_failed", username[:100], "no such user")
        log.info("sign-in refused: unknown user")
        return None
    if user.locked_until is not None and user.locked_until > now:
        record_event(session, "login_failed", user.username, "locked")
        log.info("sign-in refused: %s is locked", user.username)
        return None
    if not _verify(user.password_hash, password) or not user.active:
        user.failed_logins += 1
        detail = "disabled" if not user.active else "wrong password"
        record_event(session, "login_failed", user.username, detail)
        if user.failed_logins >= MAX_FAILED_SIGN_INS:
            user.locked_until = now + dt.timedelta(minutes=LOCK_MINUTES)
            user.failed_logins = 0
            record_event(session, "locked", user.username, f"{MAX_FAILED_SIGN_INS} failed sign-ins")
            log.warning("%s locked for %d minutes after failed sign-ins", user.username, LOCK_MINUTES)
        else:
            log.info("sign-in refused: %s (%s)", user.username, detail)
        return None
    user.failed_logins = 0
    user.locked_until = None
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    session.add(
        SessionRecord(
            token_sha256=_sha256(token),
            user_id=user.id,
            csrf_token=csrf,
            created_at=now,
            expires_at=now + dt.timedelta(hours=SESSION_HOURS),
            ended=False,
        )
    )
    log.info("signed in: %s", user.username)
    return SignedIn(Staff(user.id, user.username, user.role, user.area_code), token, csrf)


def session_user(session: Session, token: str | None) -> tuple[Staff, str] | None:
    """(staff, CSRF token) of a live session of an active user; None for no, ended or expired sessions."""
    if not token:
        return None
    row = session.execute(
        select(SessionRecord, User)
        .join(User, User.id == SessionRecord.user_id)
        .where(SessionRecord.token_sha256 == _sha256(token))
    ).first()
    if row is None:
        return None
    record, user = row
    if record.ended or record.expires_at <= utcnow() or not user.active:
        return None
    return Staff(user.id, user.username, user.role, user.area_code), record.csrf_token


def sign_out(session: Session, token: str | None) -> None:
    if token:
        record = session.get(SessionRecord, _sha256(token))
        if record is not None:
            record.ended = True


def _verify(hashed: str, password: str) -> bool:
    try:
        return _hasher.verify(hashed, password)
    except (VerificationError, InvalidHashError):
        return False


def _sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
