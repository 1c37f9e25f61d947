"""`dirconv`: submit, sweep, list, show, watch, metrics, aggregate, cancel, edit, archive,
restore, rerun, reproduce-paper, login, logout, whoami."""

from __future__ import annotations

import argparse
import csv
import getpass
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

from dirconv.client import AGGREGATE_LABELS, ApiError, Client, NotSupported, default_url
from dirconv.credentials import forget_token, store_token

EXIT_API_ERROR = 1
EXIT_UNREACHABLE = 3
ACCESS_ERRORS = {401: "not signed in", 403: "forbidden", 429: "too many requests"}
"""Statuses printed as one line naming the problem, whatever the detail's shape."""
EXIT_BROKEN_PIPE = 141
"""What a shell reports for a command that SIGPIPE ended (128 + 13), as `yes | head` does."""
TABLE_ROWS = 20
"""Steps `dirconv metrics` prints as a table unless --max-points says otherwise."""


class UsageError(Exception):
    """Bad command-line input found after parsing (an unreadable spec file)."""


def _floats(text: str) -> list[float]:
    return [float(part) for part in text.split(",") if part.strip()]


# Spec fields that get their own flag (the API validates; unknown values come back as errors).
SPEC_FLAGS: dict[str, Callable[[str], Any]] = {
    "name": str,
    "depth": int,
    "width": int,
    "dim": int,
    "distribution": str,
    "teacher": _floats,
    "loss": str,
    "optimizer": str,
    "lr": float,
    "batch_size": int,
    "steps": int,
    "init": str,
    "init_scale": float,
    "init_vector": _floats,
    "n_samples": int,
    "log_every": int,
    "seed": int,
    "device": str,
    "dtype": str,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `dirconv` command."""
    args = _parser().parse_args(argv)
    if not hasattr(args, "handler"):
        _parser().print_help()
        return 2
    client = Client(args.url, token=args.token)
    try:
        code = args.handler(client, args) or 0
        sys.stdout.flush()  # a closed pipe shows here, inside the handling below
        return code
    except ApiError as error:
        _print_api_error(error)
        return EXIT_API_ERROR
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except httpx.TransportError as error:
        print(f"error: cannot reach the dirconv API at {client.url} ({error})", file=sys.stderr)
        return EXIT_UNREACHABLE
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        return 130
    finally:
        client.close()


def _print_api_error(error: ApiError) -> None:
    if error.status in ACCESS_ERRORS:
        print(_access_error_line(error), file=sys.stderr)
        return
    for field, reason in error.errors:
        print(f"{field}: {reason}", file=sys.stderr)


def _access_error_line(error: ApiError) -> str:
    """A 401, 403 or 429 as one line: what happened, the API's reason, what to do."""
    line = f"error: {ACCESS_ERRORS[error.status]} ({error.status}): {_one_line(error.detail)}"
    if error.status == 401:
        line += "; pass --token, set DIRCONV_TOKEN or run `dirconv login`"
    if error.retry_after is not None:
        line += f"; retry after {error.retry_after:g} s"
    return line


def _one_line(detail: object) -> str:
    if isinstance(detail, dict):
        detail = detail.get("message") or detail.get("detail") or json.dumps(detail)
    elif not isinstance(detail, str):
        detail = json.dumps(detail)
    return " ".join(str(detail).split())


def _silence_stdout() -> None:
    """The reader of our output has gone (`dirconv show 7 | head`): send what is still
    buffered to /dev/null, or Python's own flush at exit fails again with a traceback."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dirconv", description=__doc__)
    parser.add_argument(
        "--url", default=default_url(), help="API address (env DIRCONV_URL; %(default)s)"
    )
    parser.add_argument(
        "--token",
        help="access token (env DIRCONV_TOKEN; else the one `dirconv login` kept for --url)",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    _add_submit(commands)
    _add_sweep(commands)
    _add_list(commands)
    _add_show(commands)
    _add_watch(commands)
    _add_metrics(commands)
    _add_aggregate(commands)
    _add_cancel(commands)
    _add_lifecycle(commands)
    _add_reproduce(commands)
    _add_login(commands)
    return parser


def _add_spec_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--spec", type=Path, help="a JSON spec file; flags override its fields")
    parser.add_argument("--tag", action="append", dest="tags", help="a tag (repeatable)")
    for field, kind in SPEC_FLAGS.items():
        flag = "--" + field.replace("_", "-")
        parser.add_argument(flag, dest=field, type=kind, metavar=field.upper())
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=JSON",
        help="any other spec field, its value as JSON (repeatable)",
    )


def spec_from_args(args: argparse.Namespace) -> dict:
    """The spec file's fields, overridden by --set, then by the named flags."""
    spec = _read_spec_file(args.spec) if args.spec else {}
    for assignment in args.set:
        field, _, value = assignment.partition("=")
        spec[field] = _json_or_text(value)
    if args.tags:
        spec["tags"] = args.tags
    for field in SPEC_FLAGS:
        if getattr(args, field) is not None:
            spec[field] = getattr(args, field)
    return spec


def _read_spec_file(path: Path) -> dict:
    try:
        spec = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise UsageError(f"--spec {path}: {error}") from None
    if not isinstance(spec, dict):
        raise UsageError(f"--spec {path}: expected a JSON object")
    return spec


def _json_or_text(value: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


# submit


def _add_submit(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("submit", help="queue one experiment")
    _add_spec_flags(parser)
    parser.add_argument("--watch", action="store_true", help="then watch it to the end")
    parser.set_defaults(handler=_submit)


def _submit(client: Client, args: argparse.Namespace) -> int:
    run = client.submit(**spec_from_args(args))
    print(f"submitted experiment {run['id']} ({run['name']}), {run['status']}")
    return _watch_run(client, run["id"]) if args.watch else 0


# sweep


def _add_sweep(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("sweep", help="queue one run per grid point")
    _add_spec_flags(parser)
    parser.add_argument(
        "--grid",
        action="append",
        required=True,
        metavar="FIELD=V1,V2,...",
        help="a grid axis, values as JSON (repeatable), e.g. depth=1,2,3,4",
    )
    parser.add_argument("--sweep-name", default="", help="the sweep's name")
    parser.set_defaults(handler=_sweep)


def parse_grid(axes: Sequence[str]) -> dict[str, list]:
    """`["depth=1,2", "lr=0.1,0.01"]` to `{"depth": [1, 2], "lr": [0.1, 0.01]}`."""
    grid = {}
    for axis in axes:
        field, _, values = axis.partition("=")
        grid[field.strip()] = [_json_or_text(v.strip()) for v in values.split(",") if v.strip()]
    return grid


def _sweep(client: Client, args: argparse.Namespace) -> int:
    try:
        sweep = client.sweep(spec_from_args(args), parse_grid(args.grid), name=args.sweep_name)
    except NotSupported:
        print("error: this API has no sweeps yet (POST /sweeps)", file=sys.stderr)
        return EXIT_API_ERROR
    ids = ", ".join(str(i) for i in sweep["experiment_ids"])
    print(f"submitted sweep {sweep['id']}: experiments {ids}")
    return 0


# list / show


def _add_list(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("list", help="list experiments, newest first")
    parser.add_argument("--status")
    parser.add_argument("--tag")
    parser.add_argument("--owner", help="only this user's runs")
    parser.add_argument(
        "--spec",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="only runs whose spec field equals VALUE (repeatable), e.g. depth=4, lr=1e-3",
    )
    parser.add_argument("--sweep", type=int, metavar="ID", help="only this sweep's runs")
    parser.add_argument("--archived", action="store_true", help="list archived runs too")
    parser.add_argument(
        "--sort",
        metavar="KEY",
        help="created_at, finished_at, final_directional_error, ...; --sort=-KEY descending",
    )
    parser.add_argument("--limit", type=int, default=50)
    parser.set_defaults(handler=_list)


LIST_COLUMNS = ("id", "status", "progress", "depth", "loss", "optimizer", "lr", "final_err", "name")


def _list(client: Client, args: argparse.Namespace) -> int:
    page = client.list(
        status=args.status,
        tag=args.tag,
        limit=args.limit,
        owner=args.owner,
        spec=_spec_filters(args.spec),
        sweep_id=args.sweep,
        archived=args.archived,
        sort=args.sort,
    )
    rows = [_list_row(run) for run in page["data"]]
    _print_table(LIST_COLUMNS, rows)
    print(f"({len(rows)} of {page['count']})")
    return 0


def _spec_filters(assignments: Sequence[str]) -> dict[str, str]:
    """`["depth=4", "lr=1e-3"]` to `{"depth": "4", "lr": "1e-3"}`; the API reads each value
    as its field's type."""
    filters = {}
    for assignment in assignments:
        field, equals, value = assignment.partition("=")
        if not equals or not field.strip():
            raise UsageError(f"--spec {assignment!r}: expected FIELD=VALUE")
        filters[field.strip()] = value
    return filters


def _print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Left-aligned columns as wide as their widest cell (the header alone if no rows)."""
    widths = [max([len(title), *(len(row[i]) for row in rows)]) for i, title in enumerate(header)]
    for row in [header, *rows]:
        line = "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print(line.rstrip())


def _list_row(run: dict) -> tuple[str, ...]:
    spec, summary = run["spec"], run.get("summary") or {}
    progress = run["progress"]
    percent = 100 * progress["step"] / max(progress["total_steps"], 1)
    final = summary.get("final_directional_error")
    return (
        str(run["id"]),
        run["status"],
        f"{percent:.0f}%",
        str(spec.get("depth", "")),
        str(spec.get("loss", "")),
        str(spec.get("optimizer", "")),
        f"{spec.get('lr', '')}",
        "" if final is None else f"{float(final):.4g}",
        run["name"] + (" [archived]" if run.get("archived") else ""),
    )


def _add_show(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("show", help="one experiment: status, spec, summary")
    parser.add_argument("id", type=int)
    parser.add_argument("--json", action="store_true", help="print the API's JSON as is")
    parser.set_defaults(handler=_show)


def _show(client: Client, args: argparse.Namespace) -> int:
    run = client.get(args.id)
    if args.json:
        print(json.dumps(run, indent=2))
        return 0
    progress = run["progress"]
    print(f"experiment {run['id']} ({run['name']}): {run['status']}")
    print(f"  progress  {progress['step']}/{progress['total_steps']}")
    print(f"  created   {run['created_at']}")
    if run.get("owner"):
        print(f"  owner     {run['owner']}")
    if run.get("error"):
        print(f"  error     {run['error']}")
    print("spec:")
    for key, value in run["spec"].items():
        print(f"  {key:<14}{json.dumps(value)}")
    _print_summary(run)
    return 0


def _print_summary(run: dict) -> None:
    if not run.get("summary"):
        return
    print("summary:")
    for key, value in run["summary"].items():
        print(f"  {key:<24}{json.dumps(value)}")


# watch / cancel


def _add_watch(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("watch", help="a live progress bar, then the summary")
    parser.add_argument("id", type=int)
    parser.set_defaults(handler=lambda client, args: _watch_run(client, args.id))


def _watch_run(client: Client, experiment_id: int) -> int:
    run = client.wait(experiment_id, progress=True)
    print(f"experiment {run['id']} {run['status']}")
    if run.get("error"):
        print(f"  error: {run['error']}")
    _print_summary(run)
    return 0 if run["status"] == "succeeded" else EXIT_API_ERROR


def _add_cancel(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("cancel", help="cancel a queued or running experiment")
    parser.add_argument("id", type=int)
    parser.set_defaults(handler=_cancel)


def _cancel(client: Client, args: argparse.Namespace) -> int:
    run = client.cancel(args.id)
    print(f"experiment {run['id']}: cancel requested ({run['status']})")
    return 0


# edit / archive / restore / rerun


def _add_lifecycle(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("edit", help="rename, retag or annotate an experiment")
    parser.add_argument("id", type=int)
    parser.add_argument("--name", help="the new name")
    parser.add_argument(
        "--tag", action="append", dest="tags", help="a tag (repeatable); replaces the tags"
    )
    parser.add_argument("--no-tags", action="store_true", help="remove every tag")
    parser.add_argument("--notes", help="free text (replaces the notes; '' clears them)")
    parser.set_defaults(handler=_edit)
    for command, help_text, handler in (
        ("archive", "archive an experiment (canceling it if queued or running)", _archive),
        ("restore", "bring an archived experiment back into lists", _restore),
    ):
        parser = commands.add_parser(command, help=help_text)
        parser.add_argument("id", type=int)
        parser.set_defaults(handler=handler)
    parser = commands.add_parser("rerun", help="queue a new experiment with the same spec")
    parser.add_argument("id", type=int)
    parser.add_argument("--watch", action="store_true", help="then watch it to the end")
    parser.set_defaults(handler=_rerun)


def _edit(client: Client, args: argparse.Namespace) -> int:
    tags = [] if args.no_tags else args.tags
    if args.name is None and tags is None and args.notes is None:
        raise UsageError("edit: give --name, --tag, --no-tags or --notes")
    run = client.update(args.id, name=args.name, tags=tags, notes=args.notes)
    print(f"experiment {run['id']} ({run['name']}): tags {', '.join(run['tags']) or '(none)'}")
    if run.get("notes"):
        print(f"  notes: {run['notes']}")
    return 0


def _archive(client: Client, args: argparse.Namespace) -> int:
    client.archive(args.id)
    print(f"experiment {args.id} archived (`dirconv restore {args.id}` brings it back)")
    return 0


def _restore(client: Client, args: argparse.Namespace) -> int:
    run = client.restore(args.id)
    print(f"experiment {run['id']} restored ({run['status']})")
    return 0


def _rerun(client: Client, args: argparse.Namespace) -> int:
    run = client.rerun(args.id)
    print(f"submitted experiment {run['id']} ({run['name']}), {run['status']}, rerunning {args.id}")
    return _watch_run(client, run["id"]) if args.watch else 0


# metrics


def _add_metrics(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "metrics", help="an experiment's metrics: one row a step, one column a metric"
    )
    parser.add_argument("id", type=int)
    parser.add_argument("--names", help="comma-separated metric names (default: all)")
    parser.add_argument(
        "--max-points",
        type=_int_at_least(1),
        help=f"at most this many rows, evenly spread over the steps "
        f"(default: every step for --csv, {TABLE_ROWS} for the table)",
    )
    parser.add_argument("--start-step", type=int)
    parser.add_argument("--end-step", type=int)
    parser.add_argument("--csv", action="store_true", help="CSV: step, then one column a metric")
    parser.set_defaults(handler=_metrics)


def _int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse `type` for integers from `minimum` up."""

    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}")
        return value

    parse.__name__ = "int"  # argparse names it in "invalid int value: 'x'"
    return parse


def _metrics(client: Client, args: argparse.Namespace) -> int:
    names = args.names.split(",") if args.names else None
    header, rows = _metric_rows(client, args, names)
    if args.csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
        return 0
    table = [[row[0], *(_table_cell(cell) for cell in row[1:])] for row in rows]
    _print_table(header, table)
    if not table:
        print("(no points yet)")
    return 0


def _metric_rows(
    client: Client, args: argparse.Namespace, names: list[str] | None
) -> tuple[list[str], Iterator[list[str]]]:
    """The header and the rows asked for, thinned to --max-points (the table's default too)."""
    limit = args.max_points or (None if args.csv else TABLE_ROWS)
    asked = (args.start_step, args.end_step)
    span = None if limit is None else _step_span(client, args.id, names, *asked)
    start, end = span or asked
    rows = client.metric_rows(args.id, names, start_step=start, end_step=end)
    header = next(rows)
    if limit is None:
        return header, rows
    return header, (thin_rows(rows, *span, limit) if span else iter(()))


def _step_span(
    client: Client,
    experiment_id: int,
    names: list[str] | None,
    start_step: int | None,
    end_step: int | None,
) -> tuple[int, int] | None:
    """The first and last step any of the metrics logged in the range; None if none did."""
    ends = client.metrics(
        experiment_id, names, max_points=2, start_step=start_step, end_step=end_step
    )
    firsts = [int(steps[0]) for steps, _ in ends.values() if len(steps)]
    lasts = [int(steps[-1]) for steps, _ in ends.values() if len(steps)]
    return (min(firsts), max(lasts)) if firsts else None


def thin_rows(rows: Iterable[list[str]], first: int, last: int, keep: int) -> Iterator[list[str]]:
    """At most `keep` rows whose steps lie in [first, last], evenly spread: the first row in
    each of keep - 1 equal step buckets, and the row at `last`."""
    buckets = max(keep - 1, 0)
    width = max(last - first, 1)
    taken = -1
    for row in rows:
        bucket = (int(row[0]) - first) * buckets // width
        if bucket > taken and int(row[0]) <= last:
            taken = bucket
            yield row


def _table_cell(text: str) -> str:
    return f"{float(text):.6g}" if text else ""


# aggregate


def _add_aggregate(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "aggregate", help="statistics of one metric over runs (or a sweep's groups) per step"
    )
    parser.add_argument("ids", nargs="?", help="comma-separated experiment ids")
    parser.add_argument("--sweep", type=int, metavar="ID", help="a sweep's members instead")
    parser.add_argument("--by", help="with --sweep: comma-separated grid fields to group by")
    parser.add_argument("--name", default="directional_error", help="the metric (%(default)s)")
    parser.add_argument("--stats", help="comma-separated (default mean,min,max,median)")
    parser.add_argument(
        "--max-points",
        type=_int_at_least(2),
        default=TABLE_ROWS,
        help="at most this many steps (every k-th step; %(default)s)",
    )
    parser.add_argument("--start-step", type=int)
    parser.add_argument("--end-step", type=int)
    parser.add_argument("--archived", action="store_true", help="include archived runs")
    parser.add_argument("--csv", action="store_true", help="CSV instead of a table")
    parser.set_defaults(handler=_aggregate)


def _aggregate(client: Client, args: argparse.Namespace) -> int:
    if (args.ids is None) == (args.sweep is None):
        raise UsageError("aggregate: give experiment ids or --sweep ID (one of them)")
    if args.by and args.sweep is None:
        raise UsageError("aggregate: --by needs --sweep")
    options = {
        "name": args.name,
        "stats": args.stats,
        "max_points": args.max_points,
        "start_step": args.start_step,
        "end_step": args.end_step,
        "archived": args.archived,
    }
    if args.sweep is not None:
        answer = client.sweep_aggregate(args.sweep, by=args.by, **options)
        groups, by = answer["groups"], answer["by"]
    else:
        answer = client.aggregate(_ids(args.ids), **options)
        groups, by = [{"values": {}, **answer}], []
        _report_missing(answer["missing"])
    header, rows = aggregate_rows(groups, by)
    _print_rows(header, rows, args.csv)
    return 0


def _ids(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"ids {text!r}: expected comma-separated numbers") from None


def _report_missing(missing: Sequence[int]) -> None:
    if missing:
        left_out = ", ".join(str(i) for i in missing)
        print(f"left out: {left_out} (no such run, or archived: --archived)", file=sys.stderr)


def aggregate_rows(groups: Sequence[dict], by: Sequence[str]) -> tuple[list[str], list[list]]:
    """One row a step of each group: the group's `by` values, step, n, then each statistic
    (in the answer's order)."""
    if not groups:
        return [*by, "step", "n"], []
    stats = [key for key in groups[0] if key not in (*AGGREGATE_LABELS, "steps", "n")]
    rows = []
    for group in groups:
        values = [str(group["values"].get(field, "")) for field in by]
        for i, step in enumerate(group["steps"]):
            rows.append([*values, int(step), int(group["n"][i]), *(group[s][i] for s in stats)])
    return [*by, "step", "n", *stats], rows


def _print_rows(header: Sequence[str], rows: Sequence[Sequence[Any]], as_csv: bool) -> None:
    if as_csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
        return
    _print_table(header, [[_cell(value) for value in row] for row in rows])
    if not rows:
        print("(no points)")


def _cell(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


# reproduce-paper


def _add_reproduce(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "reproduce-paper", help="run the paper's depth 1-4 experiment, write figure and table"
    )
    parser.add_argument("--out", type=Path, default=Path("reproduction"))
    parser.add_argument("--depths", default="1,2,3,4", help="comma-separated depths")
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--log-every", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.set_defaults(handler=_reproduce)


def _reproduce(client: Client, args: argparse.Namespace) -> int:
    from dirconv.reproduce import reproduce_paper

    depths = [int(depth) for depth in args.depths.split(",")]
    reproduce_paper(
        client, args.out, depths=depths, steps=args.steps, log_every=args.log_every, seed=args.seed
    )
    print(f"wrote {args.out / 'figure.png'} and {args.out / 'table.md'}")
    return 0


# login / logout / whoami


def _add_login(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "login", help="check a token (--token, DIRCONV_TOKEN or asked for) and keep it for --url"
    )
    parser.set_defaults(handler=_login)
    parser = commands.add_parser("logout", help="forget the token kept for --url")
    parser.set_defaults(handler=_logout)
    parser = commands.add_parser("whoami", help="the user and role the API takes you for")
    parser.set_defaults(handler=_whoami)


def _login(client: Client, args: argparse.Namespace) -> int:
    token = args.token or os.environ.get("DIRCONV_TOKEN") or _ask_token()
    with Client(client.url, token=token) as checked:
        me = checked.me()
    if me.get("user") is None:
        print(f"{client.url} does not ask for tokens (auth off); nothing kept")
        return 0
    path = store_token(client.url, token)
    print(f"signed in to {client.url} as {me['user']} ({me['role']}); token kept in {path}")
    return 0


def _ask_token() -> str:
    """A prompt that does not echo on a terminal; else the first line of stdin."""
    try:
        token = getpass.getpass("token: ") if sys.stdin.isatty() else sys.stdin.readline()
    except EOFError:
        token = ""
    if not token.strip():
        raise UsageError("no token given (--token, DIRCONV_TOKEN or type it when asked)")
    return token.strip()


def _logout(client: Client, _args: argparse.Namespace) -> int:
    if forget_token(client.url):
        print(f"signed out of {client.url}")
    else:
        print(f"no token was kept for {client.url}")
    return 0


def _whoami(client: Client, _args: argparse.Namespace) -> int:
    me = client.me()
    who = "anyone (auth off)" if me.get("user") is None else f"{me['user']} ({me['role']})"
    print(f"{who} at {client.url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
