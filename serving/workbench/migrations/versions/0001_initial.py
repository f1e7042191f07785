"""the workbench's tables: lists, entries, visits and revisions, users, sessions, security events

Revision ID: 0001
Revises: (none)
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "lists",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("county_code", sa.String(length=6), nullable=False),
        sa.Column("as_of", sa.String(length=7), nullable=False),
        sa.Column("scores_sha256", sa.String(length=64), nullable=False),
        sa.Column("model_name", sa.String(length=100), nullable=False),
        sa.Column("model_version", sa.String(length=40), nullable=False),
        sa.Column("input_fingerprint", sa.String(length=100), nullable=False),
        sa.Column("listed_on", sa.Date(), nullable=False),
        sa.Column("imported_at", sa.DateTime(), nullable=False),
        sa.Column("households", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("county_code", "as_of", name="uq_lists_county_as_of"),
    )
    op.create_table(
        "security_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("kind", sa.String(length=30), nullable=False),
        sa.Column("username", sa.String(length=100), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("security_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_security_events_at"), ["at"], unique=False)

    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=100), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=10), nullable=False),
        sa.Column("area_code", sa.String(length=12), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("failed_logins", sa.Integer(), nullable=False),
        sa.Column("locked_until", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("username"),
    )
    op.create_table(
        "list_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("list_id", sa.Integer(), nullable=False),
        sa.Column("household_id", sa.String(length=64), nullable=False),
        sa.Column("county_code", sa.String(length=6), nullable=False),
        sa.Column("township_code", sa.String(length=9), nullable=False),
        sa.Column("village_code", sa.String(length=12), nullable=False),
        sa.Column("rank_county", sa.Integer(), nullable=False),
        sa.Column("rank_township", sa.Integer(), nullable=False),
        sa.Column("risk_score", sa.Float(), nullable=False),
        sa.Column("risk_band", sa.String(length=10), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("first_reason", sa.String(length=60), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["list_id"],
            ["lists.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("list_id", "household_id", name="uq_entries_list_household"),
    )
    with op.batch_alter_table("list_entries", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_list_entries_household_id"), ["household_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_list_entries_list_id"), ["list_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_list_entries_township_code"), ["township_code"], unique=False)

    op.create_table(
        "sessions",
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("ended", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
        ),
        sa.PrimaryKeyConstraint("token_sha256"),
    )
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sessions_user_id"), ["user_id"], unique=False)

    op.create_table(
        "visits",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("client_key", sa.String(length=64), nullable=False),
        sa.Column("entry_id", sa.Integer(), nullable=False),
        sa.Column("household_id", sa.String(length=64), nullable=False),
        sa.Column("township_code", sa.String(length=9), nullable=False),
        sa.Column("visit_date", sa.Date(), nullable=False),
        sa.Column("visitor", sa.String(length=100), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("measures", sa.JSON(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_by", sa.String(length=100), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["entry_id"],
            ["list_entries.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("client_key"),
    )
    with op.batch_alter_table("visits", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_visits_entry_id"), ["entry_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_visits_household_id"), ["household_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_visits_township_code"), ["township_code"], unique=False)

    op.create_table(
        "visit_revisions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("visit_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("changed_by", sa.String(length=100), nullable=False),
        sa.Column("changed_at", sa.DateTime(), nullable=False),
        sa.Column("values", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["visit_id"],
            ["visits.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("visit_id", "version", name="uq_revisions_visit_version"),
    )
    with op.batch_alter_table("visit_revisions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_visit_revisions_visit_id"), ["visit_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("visit_revisions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_visit_revisions_visit_id"))

    op.drop_table("visit_revisions")
    with op.batch_alter_table("visits", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_visits_township_code"))
        batch_op.drop_index(batch_op.f("ix_visits_household_id"))
        batch_op.drop_index(batch_op.f("ix_visits_entry_id"))

    op.drop_table("visits")
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sessions_user_id"))

    op.drop_table("sessions")
    with op.batch_alter_table("list_entries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_list_entries_township_code"))
        batch_op.drop_index(batch_op.f("ix_list_entries_list_id"))
        batch_op.drop_index(batch_op.f("ix_list_entries_household_id"))

    op.drop_table("list_entries")
    op.drop_table("users")
    with op.batch_alter_table("security_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_security_events_at"))

    op.drop_table("security_events")
    op.drop_table("lists")
