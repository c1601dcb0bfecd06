"""The first release's tables (a registry written before Alembic is stamped at this revision
or the next, from its SQLite ``user_version``).

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "models",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("label", sa.Text, nullable=False),
        sa.Column("problem_type", sa.Text, nullable=False),
        sa.Column("eval_metric", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "versions",
        sa.Column("model_name", sa.Text, primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("parent_version", sa.Integer),
        sa.Column("val_score", sa.Float),
        sa.Column("train_digest", sa.Text),
        sa.Column("train_dataset", sa.Text),
        sa.Column("job_id", sa.Text),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("forgetting_before", sa.Float),
        sa.Column("forgetting_after", sa.Float),
    )
    op.create_table(
        "datasets",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("display_name", sa.Text),
        sa.Column("format", sa.Text, nullable=False),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("num_rows", sa.BigInteger, nullable=False),
        sa.Column("columns", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "jobs",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("model_name", sa.Text, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("spec", sa.Text, nullable=False),
        sa.Column("version", sa.Integer),
        sa.Column("error", sa.Text),
        sa.Column("worker_pid", sa.Integer),
        sa.Column("resumes_job_id", sa.Text),
    )
    op.create_index("jobs_by_model", "jobs", ["model_name", "created_at"])
    op.create_table(
        "job_events",
        sa.Column("job_id", sa.Text, primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("time", sa.Float, nullable=False),
        sa.Column("event", sa.Text, nullable=False),
    )
    op.create_table(
        "artifacts",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("model_name", sa.Text, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("files", sa.Text, nullable=False),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    for table in ("artifacts", "job_events", "jobs", "datasets", "versions", "models"):
        op.drop_table(table)
