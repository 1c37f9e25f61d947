"""The writer's memory of its tail chunks never outlives a write that did not commit."""

from __future__ import annotations

import numpy as np
import pytest

from core import lifecycle, metric_store
from tests.worker.test_queue import INFO, _series
from worker import queue


class Refused(Exception):
    """A failure inside the transaction, after the metric points were written."""


def _progress(lease: lifecycle.Lease, first: int, last: int) -> queue.Progress:
    steps = np.arange(first, last + 1)
    return queue.Progress(lease, {"loss": (steps, steps * 0.5)}, last, checkpoint=b"state")


def test_a_failed_write_makes_the_writer_read_its_tails_again(client, db, monkeypatch):
    experiment_id = client.post("/experiments", json={}).json()["id"]
    lease = lifecycle.claim_next(db, INFO.id).lease
    tails = metric_store.Tails()
    queue.record_progress(db, [_progress(lease, 0, 9)], tails)

    def refuse(*_args) -> None:
        raise Refused

    with monkeypatch.context() as patch, pytest.raises(Refused):
        patch.setattr(queue, "_save_checkpoint", refuse)
        queue.record_progress(db, [_progress(lease, 10, 19)], tails)
    assert _series(db, experiment_id, "loss")[0] == list(range(10))
    queue.record_progress(db, [_progress(lease, 10, 14)], tails)
    assert _series(db, experiment_id, "loss") == (list(range(15)), [s * 0.5 for s in range(15)])
