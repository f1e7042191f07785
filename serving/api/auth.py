"""Bearer-key authentication for the API, as ASGI middleware.

Keys come from the environment, never from code: ``RELAPSE_API_KEYS``
(comma-separated) and/or ``RELAPSE_API_KEYS_FILE`` (one key a line; blank
lines and lines starting with ``#`` are skipped). The server refuses to start
without at least one key, so a forgotten setting cannot open the API.

Every path needs ``Authorization: Bearer <key>`` except the probes and
documents a load balancer or an integrator needs before holding a key:
``/livez``, ``/readyz``, ``/healthz``, ``/metrics``, ``/docs.json`` and the
documentation page with its static files. A missing or wrong key is 401.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from relapse_risk.features.errors import RelapseRiskError

if TYPE_CHECKING:  # types only: the keys are read (launch.py) without importing any server library
    from starlette.types import ASGIApp, Receive, Scope, Send

KEYS_VARIABLE = "RELAPSE_API_KEYS"
KEYS_FILE_VARIABLE = "RELAPSE_API_KEYS_FILE"
MIN_KEY_LENGTH = 16

OPEN_PATHS = frozenset({"/", "/livez", "/readyz", "/healthz", "/metrics", "/docs.json"})
OPEN_PREFIXES = ("/static_content/", "/assets/")


class ApiKeyConfigError(RelapseRiskError, RuntimeError):
    """No usable API keys are configured; the message says where keys are read from."""


def _keys_from_file(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ApiKeyConfigError(
            f"{KEYS_FILE_VARIABLE}={path}: cannot read the key file ({exc.strerror})"
        ) from None
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def load_api_keys(environ: Mapping[str, str]) -> tuple[str, ...]:
    """The configured keys, from ``RELAPSE_API_KEYS`` and ``RELAPSE_API_KEYS_FILE`` together.

    Raises :class:`ApiKeyConfigError` when there is none or one is shorter
    than :data:`MIN_KEY_LENGTH` characters (the message never shows a key).
    """
    keys = [k.strip() for k in environ.get(KEYS_VARIABLE, "").split(",") if k.strip()]
    file_setting = environ.get(KEYS_FILE_VARIABLE, "").strip()
    if file_setting:
        keys += _keys_from_file(Path(file_setting))
    if not keys:
        raise ApiKeyConfigError(
            f"no API keys configured: set {KEYS_VARIABLE} (comma-separated) or {KEYS_FILE_VARIABLE} "
            "(a file with one key a line)"
        )
    short = [i + 1 for i, k in enumerate(keys) if len(k) < MIN_KEY_LENGTH]
    if short:
        raise ApiKeyConfigError(
            f"API key(s) number {', '.join(map(str, short))} are shorter than {MIN_KEY_LENGTH} characters"
        )
    return tuple(dict.fromkeys(keys))


def _digest(key: str | bytes) -> bytes:
    return hashlib.sha256(key.encode("utf-8") if isinstance(key, str) else key).digest()


def bearer_token(authorization: bytes | None) -> bytes | None:
    """The token of an ``Authorization: Bearer <token>`` header value, else None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(b" ")
    if scheme.lower() != b"bearer" or not token.strip():
        return None
    return token.strip()


def is_open_path(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


class KeyChecker:
    """Holds only digests of the keys and compares in constant time per key."""

    def __init__(self, keys: Iterable[str]) -> None:
        self._digests = tuple(_digest(k) for k in keys)
        if not self._digests:
            raise ApiKeyConfigError("no API keys given")

    def accepts(self, token: bytes | None) -> bool:
        if token is None:
            return False
        presented = _digest(token)
        # Compare against every key so the time taken does not tell which one matched.
        matches = [hmac.compare_digest(presented, d) for d in self._digests]
        return any(matches)


_UNAUTHORIZED_BODY = json.dumps(
    {"error": "missing or invalid API key (Authorization: Bearer <key>)"}
).encode()


class BearerAuthMiddleware:
    """ASGI middleware: 401 unless the request carries a configured key.

    ``keys=None`` reads them from the process environment when the server
    builds its app (in each worker), not when the module is imported.
    """

    def __init__(self, app: ASGIApp, keys: Iterable[str] | None = None) -> None:
        self.app = app
        self.checker = KeyChecker(load_api_keys(os.environ) if keys is None else keys)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or is_open_path(scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        authorization = dict(scope.get("headers") or []).get(b"authorization")
        if self.checker.accepts(bearer_token(authorization)):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(_UNAUTHORIZED_BODY)).encode()),
                    (b"www-authenticate", b'Bearer realm="relapse-risk"'),
                ],
            }
        )
        await send({"type": "http.response.body", "body": _UNAUTHORIZED_BODY})
