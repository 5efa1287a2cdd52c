"""Initial schema: studies, trials, trial_results, pareto_snapshots (matches autopeft.store.models).

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

STUDY_STATUSES = ("running", "paused", "complete", "failed")
TRIAL_STATUSES = ("waiting", "running", "paused", "complete", "pruned", "failed")


def _json() -> sa.types.TypeEngine:
    return sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def _status(values: tuple[str, ...], name: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, create_constraint=True, length=16)


def _stamp(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "studies",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(length=255), nullable=False, unique=True),
        sa.Column("space", _json(), nullable=False),
        sa.Column("recipe", _json(), nullable=False),
        sa.Column("objectives", _json(), nullable=False),
        sa.Column("strategy", sa.String(length=64), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=True),
        sa.Column("status", _status(STUDY_STATUSES, "study_status"), nullable=False),
        _stamp("created_at"),
        _stamp("updated_at"),
    )
    op.create_table(
        "pareto_snapshots",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("study_id", sa.Integer(), sa.ForeignKey("studies.id", ondelete="CASCADE"), nullable=False),
        sa.Column("trial_ids", _json(), nullable=False),
        sa.Column("hypervolume", sa.Float(), nullable=True),
        _stamp("created_at"),
    )
    op.create_index("ix_pareto_snapshots_study_id", "pareto_snapshots", ["study_id"])
    op.create_table(
        "trials",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("study_id", sa.Integer(), sa.ForeignKey("studies.id", ondelete="CASCADE"), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("config", _json(), nullable=False),
        sa.Column("plan", _json(), nullable=True),
        sa.Column("status", _status(TRIAL_STATUSES, "trial_status"), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("worker", sa.Text(), nullable=True),
        _stamp("created_at"),
        _stamp("started_at", nullable=True),
        _stamp("finished_at", nullable=True),
        sa.UniqueConstraint("study_id", "number", name="uq_trials_study_number"),
    )
    op.create_index("ix_trials_study_id", "trials", ["study_id"])
    op.create_table(
        "trial_results",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("trial_id", sa.Integer(), sa.ForeignKey("trials.id", ondelete="CASCADE"), nullable=False),
        sa.Column("fidelity", sa.Integer(), nullable=False),
        sa.Column("objectives", _json(), nullable=False),
        sa.Column("metrics", _json(), nullable=False),
        _stamp("created_at"),
        sa.UniqueConstraint("trial_id", "fidelity", name="uq_trial_results_trial_fidelity"),
    )
    op.create_index("ix_trial_results_trial_id", "trial_results", ["trial_id"])


def downgrade() -> None:
    op.drop_table("trial_results")
    op.drop_table("trials")
    op.drop_table("pareto_snapshots")
    op.drop_table("studies")
