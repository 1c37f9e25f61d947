"""A small Python client for the dirconv HTTP API.

from dirconv import Client
client = Client()                       # DIRCONV_URL or http://127.0.0.1:8000
                                        # token: DIRCONV_TOKEN, else `dirconv login`'s
run = client.submit(depth=4, tags=["paper"])
client.wait(run["id"], progress=True)
steps, errors = client.metrics(run["id"], ["directional_error"])["directional_error"]
"""

from __future__ import annotations

import csv
import json
import os
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import httpx
import numpy as np
from httpx_sse import connect_sse

from dirconv.credentials import stored_token

DEFAULT_URL = "http://127.0.0.1:8000"
POLL_SECONDS = 0.5
TIMEOUT_SECONDS = 30.0
FINISHED = ("succeeded", "failed", "canceled")
SUBMIT_ATTEMPTS = 4
RETRY_SECONDS = 0.5
RETRY_STATUSES = (502, 503, 504)
"""Answers after which a submission is sent again (with its Idempotency-Key)."""

Series = tuple[np.ndarray, np.ndarray]
ARROW_STREAM = "application/vnd.apache.arrow.stream"
"""The media type of the API's binary metric answers (Arrow IPC stream, one row per point)."""


def arrow_available() -> bool:
    """Whether pyarrow can be imported here: then metric reads come as Arrow, not JSON."""
    try:
        import pyarrow.ipc  # noqa: F401
    except ImportError:
        return False
    return True


class ApiError(Exception):
    """The API answered with an error: its HTTP `status`, its `detail`, `errors` as (field,
    reason) pairs, and `retry_after` (seconds, from a 429's or 503's Retry-After) or None."""

    def __init__(self, status_code: int, detail: Any, retry_after: float | None = None) -> None:
        self.status_code = status_code
        self.detail = detail
        self.retry_after = retry_after
        self.errors = _field_errors(detail)
        super().__init__("; ".join(f"{field}: {reason}" for field, reason in self.errors))

    @property
    def status(self) -> int:
        return self.status_code


class NotSupported(ApiError):
    """The API has no such endpoint (404/405 on a route that is not there yet)."""


def _field_errors(detail: Any) -> list[tuple[str, str]]:
    """FastAPI's 422 detail as (dotted field, message); other details as ("error", text)."""
    if isinstance(detail, list):
        pairs = []
        for item in detail:
            loc = [str(part) for part in item.get("loc", []) if part not in ("body", "query")]
            pairs.append((".".join(loc) or "request", str(item.get("msg", item))))
        return pairs
    return [("error", str(detail))]


def default_url() -> str:
    return os.environ.get("DIRCONV_URL", DEFAULT_URL).rstrip("/")


def default_token(url: str) -> str | None:
    """DIRCONV_TOKEN, else the token `dirconv login` stored for `url`."""
    return os.environ.get("DIRCONV_TOKEN") or stored_token(url)


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers["Retry-After"])
    except (KeyError, ValueError):
        return None


class BearerToken(httpx.Auth):
    """Sends `Authorization: Bearer <token>`; its repr never shows the token."""

    def __init__(self, token: str) -> None:
        self._header = f"Bearer {token}"

    def auth_flow(self, request: httpx.Request):  # noqa: ANN201
        request.headers["Authorization"] = self._header
        yield request

    def __repr__(self) -> str:
        return "BearerToken(<hidden>)"


def to_array(values: Iterable[Any]) -> np.ndarray:
    """JSON values to floats; the API spells non-finite values "NaN", "Infinity", "-Infinity"."""
    return np.array([float(value) for value in values], dtype=np.float64)


STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class Client:
    """Talks to one dirconv API; every method raises `ApiError` on an error answer.

    `token` (or DIRCONV_TOKEN, or the one `dirconv login` stored for `url`) is sent as
    `Authorization: Bearer`; without one the API answers 401 where it requires tokens.
    `arrow`: read metrics as Arrow (True), as JSON (False), or Arrow where pyarrow can be
    imported (None)."""

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        timeout: float = TIMEOUT_SECONDS,
        arrow: bool | None = None,
    ) -> None:
        self.url = (url or default_url()).rstrip("/")
        token = token or default_token(self.url)
        auth = BearerToken(token) if token else None
        self._http = httpx.Client(base_url=self.url, timeout=timeout, auth=auth)
        self.arrow = arrow_available() if arrow is None else arrow

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        """The answer's JSON, or {(experiment_id, metric): Series} for an Arrow answer."""
        if method in STATE_CHANGING:  # the API refuses them without it (415), body or not
            kwargs["headers"] = {"Content-Type": "application/json", **kwargs.get("headers", {})}
        with self._http.stream(method, path, **kwargs) as response:
            if response.is_success and _is_arrow(response):
                return arrow_series(_received(response))
            response.read()
        if response.status_code == 204:
            return None
        if response.is_success:
            return response.json()
        raise _error_of(response)

    def me(self) -> dict:
        """Who the API takes this client for: `{"user": ..., "role": ...}`."""
        return self._request("GET", "/me")

    # Tokens (admins only)

    def create_token(self, user: str, role: str, expires_days: int | None = None) -> dict:
        """A new token for `user`; its secret is under "token", in this answer only."""
        body = {"user": user, "role": role, "expires_days": expires_days}
        return self._request("POST", "/tokens", json=body)

    def tokens(self) -> dict:
        """`{"data": [...], "count": n}`: every token, without secrets."""
        return self._request("GET", "/tokens")

    def revoke_token(self, token_id: int) -> None:
        self._request("DELETE", f"/tokens/{token_id}")

    # Experiments

    def _create(self, path: str, body: dict) -> dict:
        """POST `body` under a fresh Idempotency-Key, sent again with the same key when the
        connection fails or the API is briefly unavailable: the server creates it once."""
        headers = {"Idempotency-Key": str(uuid.uuid4())}
        for attempt in range(SUBMIT_ATTEMPTS - 1):
            try:
                return self._request("POST", path, json=body, headers=headers)
            except httpx.TransportError:
                pass
            except ApiError as exc:
                if exc.status_code not in RETRY_STATUSES:
                    raise
            time.sleep(RETRY_SECONDS * 2**attempt)
        return self._request("POST", path, json=body, headers=headers)

    def submit(self, **spec: Any) -> dict:
        """Queue an experiment; unset fields take the paper's defaults. Returns the experiment."""
        return self._create("/experiments", spec)

    def get(self, experiment_id: int) -> dict:
        return self._request("GET", f"/experiments/{experiment_id}")

    def list(
        self,
        status: str | None = None,
        tag: str | None = None,
        limit: int = 100,
        owner: str | None = None,
        *,
        spec: Mapping[str, Any] | None = None,
        sweep_id: int | None = None,
        archived: bool = False,
        sort: str | None = None,
        offset: int | None = None,
    ) -> dict:
        """`{"data": [...], "count": total}`, newest first unless `sort` says otherwise
        (`"final_directional_error"`, `"-created_at"`). `spec={"depth": 4, "lr": 1e-3}` keeps
        runs whose spec fields equal these; `archived=True` lists archived runs too."""
        params = {
            "status": status,
            "tag": tag,
            "limit": limit,
            "owner": owner,
            "sweep_id": sweep_id,
            "archived": "true" if archived else None,
            "sort": sort,
            "offset": offset,
            **{f"spec.{field}": _query_value(value) for field, value in (spec or {}).items()},
        }
        return self._request("GET", "/experiments", params=_given(params))

    def cancel(self, experiment_id: int) -> dict:
        return self._request("POST", f"/experiments/{experiment_id}/cancel")

    def update(
        self,
        experiment_id: int,
        name: str | None = None,
        tags: Sequence[str] | None = None,
        notes: str | None = None,
    ) -> dict:
        """Rename, retag (`tags` replaces them all) or annotate a run; returns the run."""
        changes = {"name": name, "tags": None if tags is None else list(tags), "notes": notes}
        return self._request("PATCH", f"/experiments/{experiment_id}", json=_given(changes))

    def archive(self, experiment_id: int) -> None:
        """Archive a run (canceling it if queued or running): it leaves lists, compare and
        aggregate answers, and stays readable by id with `"archived": True`."""
        self._request("DELETE", f"/experiments/{experiment_id}")

    def restore(self, experiment_id: int) -> dict:
        """Bring an archived run back into lists; returns the run."""
        return self._request("POST", f"/experiments/{experiment_id}/restore")

    def rerun(self, experiment_id: int) -> dict:
        """Queue a new run with the same spec as this one; returns the new run."""
        return self._create(f"/experiments/{experiment_id}/rerun", {})

    def events(self, experiment_id: int, names: Sequence[str] | None = None) -> Iterator[dict]:
        """A run's live updates as they come, `{"event": "status" | "progress", "data": ...}`,
        until after its terminal status (`GET /experiments/{id}/events`)."""
        params = {"names": ",".join(names)} if names else {}
        path = f"/experiments/{experiment_id}/events"
        timeout = httpx.Timeout(self._http.timeout.connect, read=None)
        last_id, finished = "", False
        while not finished:  # the server closes long streams: reconnect where it stopped
            headers = {"Last-Event-ID": last_id} if last_id else {}
            with connect_sse(
                self._http, "GET", path, params=params, headers=headers, timeout=timeout
            ) as source:
                if not source.response.is_success:
                    source.response.read()
                    raise _error_of(source.response)
                for event in source.iter_sse():
                    last_id = event.id or last_id
                    data = event.json()
                    finished = event.event == "status" and data["status"] in FINISHED
                    yield {"event": event.event, "data": data}

    def metrics(
        self,
        experiment_id: int,
        names: Sequence[str] | str | None = None,
        *,
        max_points: int | None = None,
        start_step: int | None = None,
        end_step: int | None = None,
    ) -> dict[str, Series]:
        """Each metric as (steps, values) numpy arrays."""
        if isinstance(names, str):
            names = [names]
        params = {
            "names": ",".join(names) if names else None,
            "max_points": max_points,
            "start_step": start_step,
            "end_step": end_step,
        }
        body = self._request(
            "GET",
            f"/experiments/{experiment_id}/metrics",
            params={k: v for k, v in params.items() if v is not None},
            headers=self._metric_headers(),
        )
        if isinstance(body, dict) and "series" in body:
            return {name: _json_series(series) for name, series in body["series"].items()}
        return {name: series for (_, name), series in body.items()}

    def compare(
        self, ids: Sequence[int], name: str = "directional_error", max_points: int | None = None
    ) -> dict[int, Series]:
        """One metric of many runs, {experiment_id: (steps, values)}; unknown ids are left
        out."""
        params: dict[str, Any] = {"ids": ",".join(str(i) for i in ids), "name": name}
        if max_points:
            params["max_points"] = max_points
        body = self._request(
            "GET", "/metrics/compare", params=params, headers=self._metric_headers()
        )
        if isinstance(body, dict) and "runs" in body:
            return {run["experiment_id"]: _json_series(run) for run in body["runs"]}
        return {experiment_id: series for (experiment_id, _), series in body.items()}

    def aggregate(
        self,
        ids: Sequence[int],
        name: str = "directional_error",
        stats: Sequence[str] | str | None = None,
        max_points: int | None = None,
        start_step: int | None = None,
        end_step: int | None = None,
        archived: bool = False,
    ) -> dict:
        """Statistics of one metric over runs at each step (`GET /metrics/aggregate`):
        `{"name", "ids", "missing", "steps", "n", <stat>...}` with numpy arrays for `steps`,
        `n` and each statistic (default mean, min, max, median)."""
        params = {
            "ids": ",".join(str(i) for i in ids),
            "name": name,
            **_aggregate_params(stats, max_points, start_step, end_step, archived),
        }
        return _aggregate_arrays(self._request("GET", "/metrics/aggregate", params=params))

    def sweep_aggregate(
        self,
        sweep_id: int,
        by: Sequence[str] | str | None = None,
        name: str = "directional_error",
        stats: Sequence[str] | str | None = None,
        max_points: int | None = None,
        start_step: int | None = None,
        end_step: int | None = None,
        archived: bool = False,
    ) -> dict:
        """A sweep's members grouped by the `by` grid fields, each group aggregated over the
        others (`GET /sweeps/{id}/aggregate`): `{"sweep_id", "name", "by", "groups"}`, each
        group `{"values", "ids", "steps", "n", <stat>...}` with numpy arrays as `aggregate`'s."""
        params = {
            "name": name,
            "by": _comma_list(by),
            **_aggregate_params(stats, max_points, start_step, end_step, archived),
        }
        body = self._request("GET", f"/sweeps/{sweep_id}/aggregate", params=_given(params))
        body["groups"] = [_aggregate_arrays(group) for group in body["groups"]]
        return body

    def _metric_headers(self) -> dict[str, str]:
        # An API without Arrow ignores the header and answers JSON, which is read as before.
        return {"Accept": f"{ARROW_STREAM}, application/json;q=0.5"} if self.arrow else {}

    def metric_rows(
        self,
        experiment_id: int,
        names: Sequence[str] | None = None,
        *,
        start_step: int | None = None,
        end_step: int | None = None,
    ) -> Iterator[list[str]]:
        """The CSV export, streamed as rows: the header `step, <metric>...`, then one row per
        step with every metric (an empty cell: no point at that step)."""
        params = {
            "names": ",".join(names) if names else None,
            "start_step": start_step,
            "end_step": end_step,
        }
        path = f"/experiments/{experiment_id}/metrics.csv"
        chosen = {k: v for k, v in params.items() if v is not None}
        with self._http.stream("GET", path, params=chosen) as response:
            if not response.is_success:
                response.read()
                raise _error_of(response)
            yield from csv.reader(response.iter_lines())

    def theory(self, experiment_id: int, max_points: int | None = None) -> Series | None:
        """The flow-theory directional error for a run, or None where the API cannot give it."""
        params = {"max_points": max_points} if max_points else {}
        try:
            body = self._request("GET", f"/experiments/{experiment_id}/theory", params=params)
        except ApiError as error:
            if error.status_code in (404, 405, 422):
                return None
            raise
        return np.array(body["steps"], dtype=np.int64), to_array(body["directional_error"])

    def wait(
        self,
        experiment_id: int,
        progress: bool = False,
        poll: float = POLL_SECONDS,
        timeout: float | None = None,
    ) -> dict:
        """Poll until the run ends; with `progress`, show a bar with steps/s and ETA."""
        return self.wait_all([experiment_id], progress=progress, poll=poll, timeout=timeout)[0]

    def wait_all(
        self,
        experiment_ids: Sequence[int],
        progress: bool = False,
        poll: float = POLL_SECONDS,
        timeout: float | None = None,
    ) -> list[dict]:
        """Poll until every run ends; one bar sums their steps."""
        deadline = None if timeout is None else time.monotonic() + timeout
        bar = None
        while True:
            runs = [self.get(experiment_id) for experiment_id in experiment_ids]
            done = sum(run["progress"]["step"] for run in runs)
            total = sum(run["progress"]["total_steps"] for run in runs)
            if progress:
                bar = bar or _progress_bar(total, runs)
                bar.update(max(0, done - bar.n))
            if all(run["status"] in FINISHED for run in runs):
                if bar is not None:
                    bar.close()
                return runs
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"runs {list(experiment_ids)} still going after {timeout}s")
            time.sleep(poll)

    # Sweeps (issue #3; `NotSupported` until the API has them)

    def sweep(self, base: dict | None = None, grid: dict | None = None, name: str = "") -> dict:
        """Queue one run per point of `grid` ({field: [values]}) over `base`."""
        body = {"name": name or "sweep", "base": base or {}, "grid": grid or {}}
        return self._create("/sweeps", body)

    def get_sweep(self, sweep_id: int) -> dict:
        return self._request("GET", f"/sweeps/{sweep_id}")

    def sweep_metrics(
        self, sweep_id: int, name: str = "directional_error", max_points: int | None = None
    ) -> list[dict]:
        """Each member: experiment_id, grid_values and (steps, values) arrays under "series"."""
        params: dict[str, Any] = {"name": name}
        if max_points:
            params["max_points"] = max_points
        if not self.arrow:
            body = self._request("GET", f"/sweeps/{sweep_id}/metrics", params=params)
            return [_sweep_member(member, _json_series(member)) for member in body["members"]]
        # The members' grid values from a small JSON answer, their points as Arrow.
        listed = self._request(
            "GET", f"/sweeps/{sweep_id}/metrics", params={**params, "max_points": 2}
        )
        points = self._request(
            "GET", f"/sweeps/{sweep_id}/metrics", params=params, headers=self._metric_headers()
        )
        if isinstance(points, dict) and "members" in points:  # an API without Arrow
            return [_sweep_member(member, _json_series(member)) for member in points["members"]]
        empty = (np.empty(0, np.int64), np.empty(0, np.float64))
        return [
            _sweep_member(member, points.get((member["experiment_id"], name), empty))
            for member in listed["members"]
        ]


def _error_of(response: httpx.Response) -> ApiError:
    """The error an error answer stands for; 404/405 on a route the API lacks: NotSupported."""
    try:
        body = response.json()
    except ValueError:
        body = response.text
    detail = body.get("detail", body) if isinstance(body, dict) else body
    missing_route = response.status_code == 405 or detail == "Not Found"
    error = NotSupported if missing_route else ApiError
    return error(response.status_code, detail, _retry_after(response))


def _given(params: dict[str, Any]) -> dict[str, Any]:
    """The parameters that were given (not None)."""
    return {key: value for key, value in params.items() if value is not None}


def _comma_list(items: Sequence[Any] | str | None) -> str | None:
    if items is None or isinstance(items, str):
        return items
    return ",".join(str(item) for item in items)


def _query_value(value: Any) -> str:
    """A spec value as `spec.<field>=` reads it: text as is, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def _aggregate_params(
    stats: Sequence[str] | str | None,
    max_points: int | None,
    start_step: int | None,
    end_step: int | None,
    archived: bool,
) -> dict[str, Any]:
    params = {
        "stats": _comma_list(stats),
        "max_points": max_points,
        "start_step": start_step,
        "end_step": end_step,
        "archived": "true" if archived else None,
    }
    return _given(params)


AGGREGATE_LABELS = ("name", "ids", "missing", "values")
"""Keys of an aggregate answer (or group) that are not per-step series."""


def _aggregate_arrays(body: dict) -> dict:
    """An aggregate answer with `steps` and `n` as int64 arrays and each statistic as float64
    (non-finite spellings read as floats)."""
    arrays = {
        key: to_array(value)
        for key, value in body.items()
        if key not in AGGREGATE_LABELS and isinstance(value, list)
    }
    arrays["steps"] = np.array(body["steps"], dtype=np.int64)
    arrays["n"] = np.array(body["n"], dtype=np.int64)
    return {**body, **arrays}


def _json_series(series: dict) -> Series:
    return np.array(series["steps"], dtype=np.int64), to_array(series["values"])


def _sweep_member(member: dict, series: Series) -> dict:
    return {
        "experiment_id": member["experiment_id"],
        "grid_values": member.get("grid_values", {}),
        "series": series,
    }


def _is_arrow(response: httpx.Response) -> bool:
    return response.headers.get("content-type", "").startswith(ARROW_STREAM)


def _received(response: httpx.Response) -> np.ndarray | bytes:
    """The body, read into one buffer of its announced size as it arrives: a large answer
    is not first held as a list of pieces and then copied once more to join them."""
    size = response.headers.get("content-length")
    if size is None or "content-encoding" in response.headers:
        return response.read()
    body, filled = np.empty(int(size), np.uint8), 0
    for piece in response.iter_raw():
        body[filled : filled + len(piece)] = np.frombuffer(piece, np.uint8)
        filled += len(piece)
    if filled != len(body):
        raise httpx.ReadError(f"the answer ended after {filled} of its {len(body)} bytes")
    return body


def arrow_series(body: bytes | np.ndarray) -> dict[tuple[int, str], Series]:
    """An Arrow metrics answer as {(experiment_id, metric): (int64 steps, float64 values)}.
    A series sent in one piece (as the API sends them) comes as read-only views of `body`,
    without a copy."""
    import pyarrow as pa
    import pyarrow.ipc

    parts: dict[tuple[int, str], list[tuple[np.ndarray, np.ndarray]]] = {}
    for batch in pyarrow.ipc.open_stream(body):
        metric = batch.column("metric")
        if not pa.types.is_dictionary(metric.type):
            import pyarrow.compute as pc  # slow to import; only for a plain string column

            metric = pc.dictionary_encode(metric)
        names = metric.dictionary.to_pylist()
        codes = metric.indices.to_numpy(zero_copy_only=False)
        ids = batch.column("experiment_id").to_numpy()
        steps, values = batch.column("step").to_numpy(), batch.column("value").to_numpy()
        for start, end in _runs(ids, codes):
            key = (int(ids[start]), names[codes[start]])
            parts.setdefault(key, []).append((steps[start:end], values[start:end]))
    return {key: _joined(pieces) for key, pieces in parts.items()}


def _joined(pieces: list[tuple[np.ndarray, np.ndarray]]) -> Series:
    if len(pieces) == 1:
        return pieces[0]
    return (
        np.concatenate([steps for steps, _ in pieces], dtype=np.int64),
        np.concatenate([values for _, values in pieces], dtype=np.float64),
    )


def _runs(ids: np.ndarray, codes: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) of each run of rows with the same experiment id and metric."""
    if not len(ids):
        return []
    changes = np.flatnonzero((ids[1:] != ids[:-1]) | (codes[1:] != codes[:-1])) + 1
    bounds = [0, *changes.tolist(), len(ids)]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def _progress_bar(total: int, runs: list[dict]):  # noqa: ANN202
    from tqdm import tqdm

    label = f"run {runs[0]['id']}" if len(runs) == 1 else f"{len(runs)} runs"
    return tqdm(total=total, desc=label, unit="step", unit_scale=True, dynamic_ncols=True)
