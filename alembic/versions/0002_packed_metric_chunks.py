"""packed metric chunks: one row per (experiment, metric, 4096 steps) instead of per point

Revision ID: 0002
Revises: 0001

The packing is written out here rather than imported from core.metric_store, so this
migration keeps producing the layout of revision 0002 whatever the store does later.
"""

from collections.abc import Iterator, Sequence

import numpy as np
import sqlalchemy as sa

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

CHUNK_STEPS = 4096
SKETCH_STEPS = 64
INSERT_BATCH = 1000

metric_points = sa.table(
    "metric_points",
    sa.column("experiment_id", sa.Integer()),
    sa.column("name", sa.String()),
    sa.column("step", sa.Integer()),
    sa.column("value", sa.Double()),
)
metric_chunks = sa.table(
    "metric_chunks",
    sa.column("experiment_id", sa.Integer()),
    sa.column("name", sa.String()),
    sa.column("chunk", sa.Integer()),
    sa.column("n_points", sa.Integer()),
    sa.column("sketch_offsets_u16", sa.LargeBinary()),
    sa.column("sketch_values_f64", sa.LargeBinary()),
    sa.column("offsets_u16", sa.LargeBinary()),
    sa.column("values_f64", sa.LargeBinary()),
)


def upgrade() -> None:
    op.create_table(
        "metric_chunks",
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("chunk", sa.Integer(), nullable=False),
        sa.Column("n_points", sa.Integer(), nullable=False),
        sa.Column("sketch_offsets_u16", sa.LargeBinary(), nullable=False),
        sa.Column("sketch_values_f64", sa.LargeBinary(), nullable=False),
        sa.Column("offsets_u16", sa.LargeBinary(), nullable=False),
        sa.Column("values_f64", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["experiment_id"], ["experiments.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("experiment_id", "name", "chunk"),
    )
    connection = op.get_bind()
    batch = []
    for row in _packed(connection):
        batch.append(row)
        if len(batch) >= INSERT_BATCH:
            connection.execute(metric_chunks.insert(), batch)
            batch = []
    if batch:
        connection.execute(metric_chunks.insert(), batch)
    op.drop_table("metric_points")


def _packed(connection: sa.Connection) -> Iterator[dict]:
    """Chunk rows from per-point rows (NULL was NaN), one (experiment, metric) at a time."""
    pairs = connection.execute(
        sa.select(metric_points.c.experiment_id, metric_points.c.name).distinct()
    ).all()
    for experiment_id, name in pairs:
        rows = connection.execute(
            sa.select(metric_points.c.step, metric_points.c.value)
            .where(metric_points.c.experiment_id == experiment_id, metric_points.c.name == name)
            .order_by(metric_points.c.step)
        ).all()
        steps = np.array([step for step, _ in rows], np.int64)
        values = np.array([value for _, value in rows], np.float64)  # None becomes NaN
        chunks = steps // CHUNK_STEPS
        starts = np.flatnonzero(np.r_[True, chunks[1:] != chunks[:-1]]).tolist()
        for start, end in zip(starts, [*starts[1:], len(steps)], strict=True):
            chunk = int(chunks[start])
            offsets = (steps[start:end] - chunk * CHUNK_STEPS).astype("<u2")
            sketch = _sketch(offsets, values[start:end])
            yield {
                "experiment_id": experiment_id,
                "name": name,
                "chunk": chunk,
                "n_points": end - start,
                "sketch_offsets_u16": offsets[sketch].tobytes(),
                "sketch_values_f64": values[start:end][sketch].astype("<f8").tobytes(),
                "offsets_u16": offsets.tobytes(),
                "values_f64": values[start:end].astype("<f8").tobytes(),
            }


def _sketch(offsets: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Indices of the first, last, smallest and largest point of each SKETCH_STEPS slice."""
    slices = offsets // SKETCH_STEPS
    starts = np.flatnonzero(np.r_[True, slices[1:] != slices[:-1]])
    counts = np.diff(np.r_[starts, len(values)])
    kept = [starts, starts + counts - 1]
    for reducer in (np.fmin, np.fmax):
        hits = np.flatnonzero(values == np.repeat(reducer.reduceat(values, starts), counts))
        owners = np.searchsorted(starts, hits, "right")
        kept.append(hits[np.r_[True, owners[1:] != owners[:-1]]] if len(hits) else hits)
    return np.unique(np.concatenate(kept))


def downgrade() -> None:
    op.create_table(
        "metric_points",
        sa.Column("experiment_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("value", sa.Double(), nullable=True),
        sa.ForeignKeyConstraint(["experiment_id"], ["experiments.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("experiment_id", "name", "step"),
    )
    connection = op.get_bind()
    chunks = connection.execute(sa.select(metric_chunks)).all()
    for row in chunks:
        steps = np.frombuffer(row.offsets_u16, "<u2").astype(np.int64) + row.chunk * CHUNK_STEPS
        values = np.frombuffer(row.values_f64, "<f8").tolist()
        points = [
            {
                "experiment_id": row.experiment_id,
                "name": row.name,
                "step": step,
                "value": None if value != value else value,  # NaN was stored as NULL
            }
            for step, value in zip(steps.tolist(), values, strict=True)
        ]
        if points:
            connection.execute(metric_points.insert(), points)
    op.drop_table("metric_chunks")
