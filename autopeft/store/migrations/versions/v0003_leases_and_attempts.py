"""One driver per study (a lease on the study row), trial heartbeats, and each trial's attempts.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

ATTEMPT_OUTCOMES = ("running", "reported", "failed", "lost", "timeout", "interrupted")


def upgrade() -> None:
    with op.batch_alter_table("studies") as batch:
        batch.add_column(sa.Column("lease_owner", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("lease_host", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("lease_pid", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("lease_heartbeat", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("trials") as batch:
        batch.add_column(sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "trial_attempts",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("trial_id", sa.Integer(), sa.ForeignKey("trials.id", ondelete="CASCADE"), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("fidelity", sa.Integer(), nullable=False),
        sa.Column("resume_from", sa.Integer(), nullable=True),
        sa.Column("driver", sa.String(length=64), nullable=True),
        sa.Column("worker", sa.Text(), nullable=True),
        sa.Column("outcome", sa.Enum(*ATTEMPT_OUTCOMES, name="attempt_outcome", native_enum=False,
                                     create_constraint=True, length=16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("trial_id", "number", name="uq_trial_attempts_trial_number"),
    )
    op.create_index("ix_trial_attempts_trial_id", "trial_attempts", ["trial_id"])


def downgrade() -> None:
    op.drop_table("trial_attempts")
    with op.batch_alter_table("trials") as batch:
        batch.drop_column("heartbeat_at")
    with op.batch_alter_table("studies") as batch:
        for column in ("lease_heartbeat", "lease_pid", "lease_host", "lease_owner"):
            batch.drop_column(column)
