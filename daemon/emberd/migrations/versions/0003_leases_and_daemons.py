"""Several daemons on one registry: the daemon that claimed a job holds a lease on it
(``owner``, ``lease_until``), a cancel asked through another daemon is a flag its owner
acts on, live daemons heartbeat in ``daemons``, and at most one training job per model is
queued or running (an index the database enforces, whichever daemon inserts).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

ACTIVE_TRAINING = "state IN ('QUEUED', 'RUNNING') AND kind IN ('FIT', 'RESUME', 'TRANSFER')"


def upgrade() -> None:
    op.add_column("jobs", sa.Column("owner", sa.Text))
    op.add_column("jobs", sa.Column("lease_until", sa.Float))
    op.add_column("jobs", sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=sa.false()))
    op.create_index("jobs_by_state", "jobs", ["state", "created_at"])
    op.create_index(
        "one_active_training_job_per_model", "jobs", ["model_name"], unique=True,
        sqlite_where=sa.text(ACTIVE_TRAINING), postgresql_where=sa.text(ACTIVE_TRAINING),
    )
    op.create_table(
        "daemons",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("host", sa.Text, nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("address", sa.Text, nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("heartbeat_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("daemons")
    op.drop_index("one_active_training_job_per_model", "jobs")
    op.drop_index("jobs_by_state", "jobs")
    for column in ("cancel_requested", "lease_until", "owner"):
        op.drop_column("jobs", column)
