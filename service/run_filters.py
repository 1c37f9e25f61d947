"""Finding runs: `spec.<field>=value` filters and `sort` keys of `GET /experiments`, parsed
from the query and turned into SQL that reads the same on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from typing import Annotated, Any, get_args, get_origin

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import BigInteger, ColumnElement, and_, case, cast

from core.models import Experiment
from core.settings import get_settings
from core.spec import METRIC_NAMES, ExperimentSpec, is_storable_text
from service.api.deps import invalid

SPEC_PREFIX = "spec."
TIME_KEYS = ("created_at", "started_at", "finished_at")
SUMMARY_KEYS = (
    "steps",
    "min_directional_error",
    "rate_exponent",
    "rate_constant",
    *(f"final_{name}" for name in METRIC_NAMES),
)
"""Numeric summary fields a list may be sorted by."""
NON_FINITE = ("NaN", "Infinity", "-Infinity")
SORT_KEYS = ("id", "name", *TIME_KEYS, *SUMMARY_KEYS)


def spec_filters(query: Iterable[tuple[str, str]]) -> list[ColumnElement[bool]]:
    """One SQL condition per `spec.<field>=value` pair of the query string; a field the spec
    does not have, or a value not of its type, is a 422 naming the parameter."""
    return [
        _matches(key.removeprefix(SPEC_PREFIX), value, key)
        for key, value in query
        if key.startswith(SPEC_PREFIX)
    ]


def sort_order(sort: str) -> list[Any]:
    """ORDER BY for `sort` (`key` ascending, `-key` descending), ties broken by id in the same
    direction. Runs whose value is not a finite number come after the others, and runs
    without one last, in either direction, on both databases alike."""
    key = sort.removeprefix("-")
    if key not in SORT_KEYS:
        known = ", ".join(SORT_KEYS)
        raise invalid(("query", "sort"), f"cannot sort by {key!r}; sort keys: {known}")
    descending = sort.startswith("-")
    rank, column = _summary_key(key) if key in SUMMARY_KEYS else _column_key(key)
    tie = Experiment.id
    return [rank, column.desc() if descending else column.asc(), tie.desc() if descending else tie]


def _summary_key(key: str) -> tuple[Any, Any]:
    # Non-finite summary values are stored as strings ("NaN"); SQLite would cast them to 0.
    spelled = Experiment.summary[key].as_string()
    absent = spelled.is_(None)
    non_finite = spelled.in_(NON_FINITE)
    rank = case((absent, 2), (non_finite, 1), else_=0)
    value = case((absent | non_finite, None), else_=Experiment.summary[key].as_float())
    return rank, value


def _column_key(key: str) -> tuple[Any, Any]:
    column = getattr(Experiment, key)
    return case((column.is_(None), 1), else_=0), column


def _matches(field: str, text: str, parameter: str) -> ColumnElement[bool]:
    annotation = _field_type(field, parameter)
    value = _parsed(annotation, text, parameter)
    if isinstance(value, list):
        return _list_matches(field, value, parameter)
    return _scalar(Experiment.spec[field], value)


def _field_type(field: str, parameter: str) -> Any:
    spec_field = ExperimentSpec.model_fields.get(field)
    if spec_field is None:
        known = ", ".join(SPEC_PREFIX + name for name in ExperimentSpec.model_fields)
        raise invalid(("query", parameter), f"unknown spec field {field!r}; known: {known}")
    # With the field's bounds: a value no run can hold is refused, never sent to SQL.
    if not spec_field.metadata:
        return spec_field.annotation
    return Annotated[spec_field.annotation, *spec_field.metadata]


def _parsed(annotation: Any, text: str, parameter: str) -> Any:
    try:
        if _is_list(annotation):
            return _adapter(annotation).validate_json(text)
        value = _adapter(annotation).validate_strings(text)
    except ValidationError as exc:
        message = exc.errors()[0]["msg"]
        raise invalid(("query", parameter), f"{text!r} is not a valid value: {message}") from None
    if isinstance(value, str) and not is_storable_text(value):
        raise invalid(("query", parameter), "must not contain NUL characters or lone surrogates")
    return value


def _is_list(annotation: Any) -> bool:
    return any(get_origin(part) is list for part in (annotation, *get_args(annotation)))


@cache
def _adapter(annotation: Any) -> TypeAdapter[Any]:
    return TypeAdapter(annotation)


def _list_matches(field: str, values: list, parameter: str) -> ColumnElement[bool]:
    """Each element equal, and nothing after the last one."""
    cap = get_settings().max_list_filter
    if len(values) > cap:
        raise invalid(("query", parameter), f"at most {cap:,} elements (DIRCONV_MAX_LIST_FILTER)")
    same = [_scalar(Experiment.spec[(field, i)], value) for i, value in enumerate(values)]
    beyond = Experiment.spec[(field, len(values))].as_string().is_(None)
    return and_(Experiment.spec[field].as_string().is_not(None), *same, beyond)


def _scalar(element: Any, value: Any) -> ColumnElement[bool]:
    if value is None:
        return element.as_string().is_(None)
    if isinstance(value, bool):
        return element.as_boolean() == value
    if isinstance(value, int):  # as_integer() casts to 32 bits; seeds go up to 2**63 - 1
        return cast(element.as_string(), BigInteger) == value
    if isinstance(value, float):
        return element.as_float() == value
    return element.as_string() == value
