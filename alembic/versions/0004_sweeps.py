"""sweeps

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sweeps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("base", sa.JSON(), nullable=False),
        sa.Column("grid", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("experiments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sweep_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("grid_values", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("batch_key", sa.String(length=32), nullable=True))
        batch_op.create_index(batch_op.f("ix_experiments_sweep_id"), ["sweep_id"], unique=False)
        batch_op.create_foreign_key(
            "fk_experiments_sweep_id_sweeps", "sweeps", ["sweep_id"], ["id"], ondelete="CASCADE"
        )


def downgrade() -> None:
    with op.batch_alter_table("experiments", schema=None) as batch_op:
        batch_op.drop_constraint("fk_experiments_sweep_id_sweeps", type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_experiments_sweep_id"))
        batch_op.drop_column("batch_key")
        batch_op.drop_column("grid_values")
        batch_op.drop_column("sweep_id")

    op.drop_table("sweeps")
