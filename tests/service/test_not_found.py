"""Every route that takes an id answers the same 404 for an id that names nothing, whether it
is absent or outside the id column's range, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import pytest

from core.models import Experiment, Sweep, key_range

ROUTES = [
    ("get", "/experiments/{}", "experiment"),
    ("post", "/experiments/{}/cancel", "experiment"),
    ("get", "/experiments/{}/metrics", "experiment"),
    ("get", "/experiments/{}/metrics.csv", "experiment"),
    ("get", "/experiments/{}/metrics.parquet", "experiment"),
    ("get", "/experiments/{}/theory", "experiment"),
    ("get", "/sweeps/{}", "sweep"),
    ("get", "/sweeps/{}/metrics", "sweep"),
]


@pytest.mark.parametrize(("method", "path", "noun"), ROUTES)
def test_every_route_with_an_id_answers_404_naming_it(client, method, path, noun) -> None:
    for ident in (0, -1, 7, 2**31 - 1, 2**31, 2**63, 2**70):
        response = client.request(method, path.format(ident))
        assert response.status_code == 404, (path, ident)
        assert response.json() == {"detail": f"{noun} {ident} not found"}


def test_the_id_range_is_read_from_the_key_column() -> None:
    assert key_range(Experiment) == key_range(Sweep) == range(1, 2**31)
