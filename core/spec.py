"""The experiment spec: the JSON body of `POST /experiments`, validated and normalised.

Every field is optional and defaults to the paper's run (Lin, Sun, Zhang, NeurIPS 2021).
Types are strict (no "4" for 4, no true for 1); floats must be finite.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from core.metrics import LOGGED_METRICS as LOGGED_METRICS  # re-exported: callers import both
from core.metrics import METRIC_NAMES as METRIC_NAMES
from core.settings import get_settings

MAX_INT = 2**63 - 1
MAX_DEPTH = 1_000
MAX_WIDTH = 10_000
MAX_DIM = 10_000
MAX_BATCH_SIZE = 10_000_000
MIN_INIT_NORM, MAX_INIT_NORM = 1e-12, 1e12
"""Range of |w_e(0)| for the balanced inits (init_vector's norm, init_scale): far inside where
float32 training works and the float64 flow does (it fails below |w| ~ 1e-154, where |w|^2
underflows)."""
MAX_PARAMETERS = 20_000_000
"""Most weights one network may have (depth x width^2, about): 80 MB in float32."""

DEFAULT_STEPS = 20_000


def _storable_name(name: str) -> str:
    if not is_storable_text(name):
        raise ValueError("name must not contain NUL characters or lone surrogates")
    return name


StorableName = Annotated[str, AfterValidator(_storable_name)]
"""A run's or sweep's name: text every database can store."""


def is_storable_text(text: str) -> bool:
    """Whether every database can store `text`: PostgreSQL refuses NUL, UTF-8 lone surrogates."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def clean_tags(tags: list[str]) -> list[str]:
    """Tags without repeats, each 1 to 100 storable characters (ValueError otherwise)."""
    for tag in tags:
        if not 1 <= len(tag) <= 100 or not is_storable_text(tag):
            raise ValueError("each tag must be 1 to 100 characters, without NUL or lone surrogates")
    return list(dict.fromkeys(tags))


class ExperimentSpec(BaseModel):
    """What to run. Unknown fields are rejected; `width`, `teacher`, `init_vector` are filled in."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    name: StorableName | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="The run's name (1-200 characters); default `experiment-<id>`.",
        examples=["paper-depth4"],
    )
    tags: list[str] = Field(
        default_factory=list,
        max_length=50,
        description="Labels to find the run by (each 1-100 characters); duplicates dropped.",
        examples=[["paper"]],
    )
    depth: int = Field(
        default=1,
        ge=1,
        le=MAX_DEPTH,
        description="N, the number of layers; depth 1 is the linear predictor.",
        examples=[4],
    )
    dim: int = Field(
        default=2, ge=2, le=MAX_DIM, description="d, the input dimension.", examples=[2]
    )
    width: int | None = Field(
        default=None,
        ge=1,
        le=MAX_WIDTH,
        validate_default=True,
        description="Width of the hidden layers; default `dim`.",
        examples=[2],
    )
    distribution: Literal["uniform_sphere", "gaussian"] = Field(
        default="uniform_sphere",
        description="The data: x uniform on the unit sphere S^(d-1), or x ~ N(0, I).",
        examples=["uniform_sphere"],
    )
    teacher: list[float] | None = Field(
        default=None,
        validate_default=True,
        description="The teacher direction v (`dim` numbers, not all zero): labels are "
        "sign(v.x). Stored normalised; default the last basis vector e_d.",
        examples=[[0.0, 1.0]],
    )
    loss: Literal["logistic", "exponential"] = Field(
        default="logistic",
        description="l(m) of the margin m = y w.x: log(1 + e^-m) or e^-m.",
        examples=["logistic"],
    )
    optimizer: Literal["sgd", "gd", "flow"] = Field(
        default="sgd",
        description="`sgd`: a fresh batch of `batch_size` points every step; `gd`: full-batch "
        "steps on a fixed sample of `n_samples` points; `flow`: the population gradient flow "
        "(the paper's theory), integrated on the CPU in float64.",
        examples=["sgd"],
    )
    lr: float = Field(default=1e-3, gt=0, description="The learning rate.", examples=[0.001])
    batch_size: int = Field(
        default=1000,
        ge=1,
        le=MAX_BATCH_SIZE,
        description="Fresh points drawn every step (`sgd` only).",
        examples=[1000],
    )
    n_samples: int = Field(
        default=1000,
        ge=1,
        le=MAX_BATCH_SIZE,
        description="Size of the fixed training sample (`gd` only).",
        examples=[1000],
    )
    steps: int = Field(
        default_factory=lambda: min(DEFAULT_STEPS, get_settings().max_steps),
        ge=1,
        description="Training steps, at most DIRCONV_MAX_STEPS; default 20000.",
        examples=[20000],
    )
    init: Literal["paper", "balanced", "gaussian"] = Field(
        default="paper",
        description="`paper`: a balanced net whose end-to-end vector is `init_vector`; "
        "`balanced`: the same with a seeded random direction of norm `init_scale`; "
        "`gaussian`: i.i.d. N(0, init_scale^2) entries (not balanced).",
        examples=["paper"],
    )
    init_scale: float = Field(
        default=1.0,
        ge=MIN_INIT_NORM,
        le=1e6,
        description="Scale of the `balanced` and `gaussian` inits.",
        examples=[1.0],
    )
    init_vector: list[float] | None = Field(
        default=None,
        validate_default=True,
        description="w_e(0), the end-to-end vector at step 0 (`paper` init only): `dim` numbers, "
        "norm in [1e-12, 1e12]; default 0.6 e_1 + 0.8 e_d.",
        examples=[[0.6, 0.8]],
    )
    log_every: int = Field(
        default=1,
        ge=1,
        le=MAX_INT,
        description="Log the metrics every this many steps (and at the last step).",
        examples=[1],
    )
    seed: int = Field(
        default=0,
        ge=0,
        le=MAX_INT,
        description="Seeds the data stream and the random parts of the init.",
        examples=[0],
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto",
        description="Where the worker trains; `auto` takes CUDA where the worker has it.",
        examples=["auto"],
    )
    dtype: Literal["float32", "float64"] = Field(
        default="float32",
        description="Floating-point type of the weights (`flow` always integrates in float64).",
        examples=["float32"],
    )

    @field_validator("tags")
    @classmethod
    def _tags_are_clean(cls, tags: list[str]) -> list[str]:
        return clean_tags(tags)

    @field_validator("width")
    @classmethod
    def _width_defaults_to_dim(cls, width: int | None, info: ValidationInfo) -> int | None:
        return width if width is not None else info.data.get("dim")

    @field_validator("steps")
    @classmethod
    def _steps_within_cap(cls, steps: int, info: ValidationInfo) -> int:
        cap = (info.context or {}).get("max_steps", get_settings().max_steps)
        if cap is not None and steps > cap:
            raise ValueError(f"steps must be at most {cap} (DIRCONV_MAX_STEPS)")
        return steps

    @field_validator("teacher")
    @classmethod
    def _teacher_is_unit(cls, teacher: list[float] | None, info: ValidationInfo) -> list[float]:
        dim = info.data.get("dim")
        if teacher is None:
            return _basis(dim, dim - 1) if dim else []
        _checked_norm(teacher, dim, "teacher")
        return _unit(teacher)

    @field_validator("init_vector")
    @classmethod
    def _init_vector_in_range(
        cls, init_vector: list[float] | None, info: ValidationInfo
    ) -> list[float]:
        dim = info.data.get("dim")
        if init_vector is None:
            return _default_init_vector(dim) if dim else []
        norm = _checked_norm(init_vector, dim, "init_vector")
        if not MIN_INIT_NORM <= norm <= MAX_INIT_NORM:
            raise ValueError(
                f"init_vector norm must be between {MIN_INIT_NORM:g} and {MAX_INIT_NORM:g}"
            )
        return init_vector

    @model_validator(mode="after")
    def _fields_apply(self, info: ValidationInfo) -> ExperimentSpec:
        """A field the user set that the chosen optimizer or init cannot honour is an error;
        defaults of such fields are kept silently."""
        if (info.context or {}).get("stored"):
            return self
        if _parameter_count(self) > MAX_PARAMETERS:
            field = "width" if "width" in self.model_fields_set else "depth"
            message = (
                f"depth {self.depth}, width {self.width} and dim {self.dim} make "
                f"{_parameter_count(self):,} weights; at most {MAX_PARAMETERS:,}"
            )
            raise _errors([(field, message, getattr(self, field))])
        problems = [
            (name, reason) for name, reason in _inapplicable(self) if name in self.model_fields_set
        ]
        if problems:
            raise _errors([(name, reason, getattr(self, name)) for name, reason in problems])
        return self


def _errors(problems: list[tuple[str, str, object]]) -> ValidationError:
    """A ValidationError naming each (field, reason, input)."""
    return ValidationError.from_exception_data(
        "ExperimentSpec",
        [
            InitErrorDetails(
                type=PydanticCustomError("not_applicable", reason), loc=(name,), input=value
            )
            for name, reason, value in problems
        ],
    )


def filled_width(spec: ExperimentSpec) -> int:
    """`spec.width` as validation leaves it: never None (it defaults to `dim`)."""
    assert spec.width is not None, "width is filled in by validation"
    return spec.width


def filled_teacher(spec: ExperimentSpec) -> list[float]:
    """`spec.teacher` as validation leaves it: never None (it defaults to a basis vector)."""
    assert spec.teacher is not None, "teacher is filled in by validation"
    return spec.teacher


def _parameter_count(spec: ExperimentSpec) -> int:
    if spec.depth == 1:
        return spec.dim
    width = filled_width(spec)
    return width * spec.dim + (spec.depth - 2) * width**2 + width


def _inapplicable(spec: ExperimentSpec) -> list[tuple[str, str]]:
    """(field, why) for each field whose value this spec cannot honour if set explicitly."""
    problems = []
    if spec.optimizer != "gd":
        problems.append(("n_samples", "n_samples applies only to optimizer 'gd'"))
    if spec.optimizer != "sgd":
        problems.append(
            (
                "batch_size",
                f"optimizer '{spec.optimizer}' uses no mini-batches; batch_size "
                "applies only to 'sgd'"
                + (" (set n_samples instead)" if spec.optimizer == "gd" else ""),
            )
        )
    if spec.init != "paper":
        problems.append(("init_vector", "init_vector applies only to init 'paper'"))
    if spec.init == "paper":
        problems.append(("init_scale", "init_scale applies only to init 'balanced' or 'gaussian'"))
    if spec.optimizer == "flow":
        if spec.init == "gaussian":
            problems.append(
                (
                    "init",
                    "optimizer 'flow' follows balanced networks; init 'gaussian' is not balanced",
                )
            )
        if spec.device == "cuda":
            problems.append(("device", "optimizer 'flow' is integrated on the CPU"))
        if spec.dtype == "float32":
            problems.append(("dtype", "optimizer 'flow' is integrated in float64"))
    return problems


def _basis(dim: int, index: int) -> list[float]:
    return [1.0 if i == index else 0.0 for i in range(dim)]


def _default_init_vector(dim: int) -> list[float]:
    """0.6 e_1 + 0.8 e_dim: the paper's (0.6, 0.8) in dim 2, same angle to e_dim in any dim."""
    vector = _basis(dim, 0)
    vector[0], vector[-1] = 0.6, 0.8
    return vector


def _checked_norm(vector: list[float], dim: int | None, field: str) -> float:
    """|vector| (infinite if it overflows a float), once its length and nonzero-ness are known."""
    if dim is not None and len(vector) != dim:
        raise ValueError(f"{field} must have dim={dim} entries, got {len(vector)}")
    largest = max(map(abs, vector), default=0.0)
    if largest == 0:
        raise ValueError(f"{field} must be nonzero")
    # Scaled first: |vector| itself may round badly for subnormal entries.
    return largest * math.hypot(*(x / largest for x in vector))


def _unit(vector: list[float]) -> list[float]:
    """vector / |vector|, finite for any finite nonzero vector: |vector| may overflow (entries
    near 1e308) or round badly (subnormal entries), vector / max|entry| does neither."""
    largest = max(map(abs, vector))
    scaled = [x / largest for x in vector]
    norm = math.hypot(*scaled)
    return [x / norm for x in scaled]


def group_key(spec: ExperimentSpec) -> tuple[object, ...]:
    """Specs with equal keys can train together, stepping in lockstep in one worker."""
    return (
        spec.optimizer, spec.dim, spec.dtype, spec.device, spec.distribution,
        spec.batch_size, spec.n_samples, spec.steps, spec.log_every,
    )  # fmt: skip


def batch_key(spec: ExperimentSpec) -> str:
    """`group_key` as a short string, stored with each sweep member for the worker's claim."""
    return hashlib.sha1(json.dumps(group_key(spec)).encode()).hexdigest()[:16]


def data_key(spec: ExperimentSpec) -> tuple[int, tuple[float, ...]]:
    """Members of a group with equal data keys share one data stream (common random numbers):
    the same batch at every step (sgd) or the same fixed sample (gd)."""
    return (spec.seed, tuple(filled_teacher(spec)))


def parse_stored_spec(stored: dict[str, Any]) -> ExperimentSpec:
    """Rebuild a spec the API stored (already normalised); the steps cap applied at submit."""
    return ExperimentSpec.model_validate(stored, context={"max_steps": None, "stored": True})
