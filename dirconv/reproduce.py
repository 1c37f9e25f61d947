"""`dirconv reproduce-paper`: the paper's depth 1-4 SGD runs beside the gradient flow.

Lin, Sun, Zhang (NeurIPS 2021), the experiment of their figure: x uniform on the circle,
logistic loss, paper init w_e(0) = (0.6, 0.8), teacher e_2, SGD with batch 1000 and lr 1e-3.
The flow curve comes from `optimizer: "flow"` runs, or else from the API's
`/experiments/{id}/theory`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dirconv.client import ApiError, Client, Series

TARGET_ERROR = 1e-2
REPORT_STEPS = (0, 100, 1_000, 2_500, 5_000, 10_000, 20_000, 50_000, 100_000)
PLOT_POINTS = 2_000
RATE_KEYS = ("rate_exponent", "rate_constant", "rate_window")


@dataclass
class Curves:
    """One depth's measured SGD run and its flow curve (with where that came from)."""

    depth: int
    sgd_run: dict
    sgd: Series
    flow: Series | None = None
    flow_source: str = "none"
    flow_run: dict | None = None
    notes: list[str] = field(default_factory=list)


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def paper_spec(depth: int, steps: int, log_every: int, seed: int, optimizer: str) -> dict:
    return {
        "name": f"paper-{optimizer}-depth{depth}",
        "tags": ["reproduce-paper"],
        "depth": depth,
        "loss": "logistic",
        "optimizer": optimizer,
        "init": "paper",
        "steps": steps,
        "log_every": log_every,
        "seed": seed,
    }


def reproduce_paper(
    client: Client,
    out: Path,
    *,
    depths: list[int],
    steps: int,
    log_every: int,
    seed: int,
    warn: Callable[[str], None] = _warn,
) -> list[Curves]:
    """Submit, wait, then write `figure.png` and `table.md` under `out`."""
    sgd_runs = [client.submit(**paper_spec(d, steps, log_every, seed, "sgd")) for d in depths]
    flow_runs = _submit_flow_runs(client, depths, steps, log_every, seed, warn)
    runs = sgd_runs + [run for run in flow_runs if run]
    client.wait_all([run["id"] for run in runs], progress=True)
    curves = [
        _collect(client, depth, sgd_run, flow_run, warn)
        for depth, sgd_run, flow_run in zip(depths, sgd_runs, flow_runs, strict=True)
    ]
    out.mkdir(parents=True, exist_ok=True)
    write_figure(curves, out / "figure.png")
    (out / "table.md").write_text(render_table(curves, steps))
    return curves


def _submit_flow_runs(
    client: Client, depths: list[int], steps: int, log_every: int, seed: int, warn: Callable
) -> list[dict | None]:
    try:
        first = client.submit(**paper_spec(depths[0], steps, log_every, seed, "flow"))
    except ApiError as error:
        warn(f"the API does not run optimizer 'flow' ({error}); using the theory curve instead")
        return [None] * len(depths)
    rest = [client.submit(**paper_spec(d, steps, log_every, seed, "flow")) for d in depths[1:]]
    return [first, *rest]


def _collect(
    client: Client, depth: int, sgd_run: dict, flow_run: dict | None, warn: Callable
) -> Curves:
    sgd_run = client.get(sgd_run["id"])
    if sgd_run["status"] != "succeeded":
        warn(f"run {sgd_run['id']} (depth {depth}) ended {sgd_run['status']}")
    sgd = client.metrics(sgd_run["id"], ["directional_error"])["directional_error"]
    curves = Curves(depth=depth, sgd_run=sgd_run, sgd=sgd)
    if flow_run is not None:
        curves.flow_run = client.get(flow_run["id"])
        curves.flow = client.metrics(flow_run["id"], ["directional_error"])["directional_error"]
        curves.flow_source = f"flow run {flow_run['id']}"
        return curves
    theory = client.theory(sgd_run["id"], max_points=PLOT_POINTS)
    if theory is not None:
        curves.flow, curves.flow_source = theory, f"GET /experiments/{sgd_run['id']}/theory"
        return curves
    curves.flow_source = "none"
    return curves


def write_figure(curves: list[Curves], path: Path) -> None:
    """Log-scale directional error against step: SGD solid, flow dashed, one colour a depth."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5), dpi=120)
    for index, curve in enumerate(curves):
        colour = f"C{index}"
        axes.plot(*_thin(curve.sgd), color=colour, lw=1.4, label=f"SGD, depth {curve.depth}")
        if curve.flow is not None:
            axes.plot(
                *curve.flow, color=colour, lw=1.4, ls="--", label=f"flow, depth {curve.depth}"
            )
    axes.set_yscale("log")
    axes.set_xlabel("step")
    axes.set_ylabel("directional error  ‖w/‖w‖ − v‖")
    axes.set_title("Deeper linear nets converge faster in direction (logistic loss, d = 2)")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(ncol=2, fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def _thin(series: Series, keep: int = PLOT_POINTS) -> Series:
    steps, values = series
    if len(steps) <= keep:
        return series
    index = np.unique(np.linspace(0, len(steps) - 1, keep).round().astype(np.int64))
    return steps[index], values[index]


def value_at(series: Series | None, step: int) -> float | None:
    """The value logged at the last step not after `step`, or None past the series."""
    if series is None or len(series[0]) == 0 or step > series[0][-1]:
        return None
    index = int(np.searchsorted(series[0], step, side="right")) - 1
    return float(series[1][index]) if index >= 0 else None


def steps_to(series: Series | None, target: float = TARGET_ERROR) -> int | None:
    """The first logged step whose error is at most `target`."""
    if series is None:
        return None
    hits = np.flatnonzero(series[1] <= target)
    return int(series[0][hits[0]]) if len(hits) else None


def render_table(curves: list[Curves], steps: int) -> str:
    """The markdown table: errors at chosen steps, steps to 1e-2, fitted rates."""
    chosen = [s for s in REPORT_STEPS if s <= steps]
    if steps not in chosen:
        chosen.append(steps)
    lines = [
        "| depth | curve | " + " | ".join(f"err @ {s:,}" for s in chosen) + " | steps to 1e-2 |",
        "|---|---|" + "---|" * (len(chosen) + 1),
    ]
    for curve in curves:
        for label, series in (("SGD", curve.sgd), ("flow", curve.flow)):
            cells = [_number(value_at(series, s)) for s in chosen]
            reached = steps_to(series)
            to_target = f"{reached:,}" if reached is not None else f"not by {steps:,}"
            lines.append(f"| {curve.depth} | {label} | " + " | ".join(cells) + f" | {to_target} |")
    return "\n".join([*lines, "", *_rate_lines(curves), "", *_source_lines(curves)]) + "\n"


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"


def _rate_lines(curves: list[Curves]) -> list[str]:
    """Fitted rates from the runs' summaries (issue #3 adds them); said plainly when absent."""
    rows = []
    for curve in curves:
        summary = curve.sgd_run.get("summary") or {}
        if any(key in summary for key in RATE_KEYS):
            cells = " | ".join(_rate_cell(summary.get(key)) for key in RATE_KEYS)
            rows.append(f"| {curve.depth} | {cells} |")
    if not rows:
        return ["Fitted rates: the API's summaries carry no `rate_exponent` yet."]
    header = "| depth | " + " | ".join(RATE_KEYS) + " |"
    return ["Fitted rates (SGD run summaries):", "", header, "|---|---|---|---|", *rows]


def _rate_cell(value: object) -> str:
    """A fitted number to 4 digits, a [first, last] window as a step range; "—" where the
    fit found no window (the summary's None)."""
    if isinstance(value, list) and len(value) == 2:
        return f"{value[0]:,}–{value[1]:,}"
    if isinstance(value, int | float):
        return f"{value:.4g}"
    return "—"


def _source_lines(curves: list[Curves]) -> list[str]:
    lines = ["Sources:"]
    for curve in curves:
        run = curve.sgd_run
        lines.append(
            f"- depth {curve.depth}: SGD experiment {run['id']} ({run['status']}); "
            f"flow from {curve.flow_source}"
        )
    return lines
