"""Version aliases, and which run (idempotency key) published each version.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # a few pre-Alembic registries got run_id before their user_version said so
    if "run_id" not in {c["name"] for c in sa.inspect(op.get_bind()).get_columns("versions")}:
        op.add_column("versions", sa.Column("run_id", sa.Text))
    op.create_table(
        "aliases",
        sa.Column("model_name", sa.Text, primary_key=True),
        sa.Column("alias", sa.Text, primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        if_not_exists=True,
    )


def downgrade() -> None:
    op.drop_table("aliases")
    op.drop_column("versions", "run_id")
