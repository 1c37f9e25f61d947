import math

import pytest
from pydantic import ValidationError

from core.spec import ExperimentSpec, parse_stored_spec


def _error_fields(body: dict) -> list[str]:
    with pytest.raises(ValidationError) as caught:
        ExperimentSpec.model_validate(body)
    return [str(error["loc"][0]) for error in caught.value.errors()]


def test_empty_spec_is_the_papers_run():
    spec = ExperimentSpec()
    assert spec.depth == 1 and spec.dim == 2 and spec.width == 2
    assert spec.teacher == [0.0, 1.0] and spec.init_vector == [0.6, 0.8]
    assert (spec.loss, spec.optimizer, spec.init) == ("logistic", "sgd", "paper")
    assert (spec.lr, spec.batch_size, spec.steps, spec.log_every) == (1e-3, 1000, 20_000, 1)
    assert (spec.distribution, spec.device, spec.dtype, spec.seed) == (
        "uniform_sphere",
        "auto",
        "float32",
        0,
    )


def test_teacher_is_stored_normalised():
    assert ExperimentSpec(teacher=[3.0, -4.0]).teacher == pytest.approx([0.6, -0.8])


def test_teacher_normalisation_survives_huge_entries():
    assert ExperimentSpec(teacher=[1e308, 1e308]).teacher == pytest.approx([2**-0.5] * 2)


def test_defaults_follow_dim():
    spec = ExperimentSpec(dim=5)
    assert spec.width == 5
    assert spec.teacher == [0, 0, 0, 0, 1.0]
    assert spec.init_vector == [0.6, 0, 0, 0, 0.8]
    error = math.dist([x / math.hypot(*spec.init_vector) for x in spec.init_vector], spec.teacher)
    assert error == pytest.approx(0.6325, abs=1e-4)


def test_explicit_width_is_kept():
    assert ExperimentSpec(depth=3, width=7).width == 7


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"depth": 0}, "depth"),
        ({"depth": "4"}, "depth"),
        ({"depth": True}, "depth"),
        ({"depth": 2.5}, "depth"),
        ({"width": 0}, "width"),
        ({"dim": 1}, "dim"),
        ({"distribution": "cauchy"}, "distribution"),
        ({"teacher": [1.0]}, "teacher"),
        ({"teacher": [0.0, 0.0]}, "teacher"),
        ({"teacher": [1.0, math.inf]}, "teacher"),
        ({"teacher": "up"}, "teacher"),
        ({"dim": 3, "teacher": [0.0, 1.0]}, "teacher"),
        ({"loss": "hinge"}, "loss"),
        ({"optimizer": "adam"}, "optimizer"),
        ({"lr": 0}, "lr"),
        ({"lr": -1e-3}, "lr"),
        ({"lr": math.nan}, "lr"),
        ({"lr": "fast"}, "lr"),
        ({"batch_size": 0}, "batch_size"),
        ({"steps": 0}, "steps"),
        ({"steps": 10**9}, "steps"),
        ({"init": "xavier"}, "init"),
        ({"init_vector": [0.0, 0.0]}, "init_vector"),
        ({"init_vector": [1.0, 2.0, 3.0]}, "init_vector"),
        ({"init_vector": [1e-300, 0.0]}, "init_vector"),
        ({"log_every": 0}, "log_every"),
        ({"seed": -1}, "seed"),
        ({"seed": 2**64}, "seed"),
        ({"device": "tpu"}, "device"),
        ({"dtype": "float16"}, "dtype"),
        ({"name": ""}, "name"),
        ({"name": 7}, "name"),
        ({"name": "a\x00b"}, "name"),
        ({"tags": "paper"}, "tags"),
        ({"tags": [""]}, "tags"),
        ({"tags": [1]}, "tags"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_field_is_rejected_with_its_name(body, field):
    assert field in _error_fields(body)


def test_steps_cap_comes_from_settings(monkeypatch):
    from core.settings import get_settings

    monkeypatch.setenv("DIRCONV_MAX_STEPS", "500")
    get_settings.cache_clear()
    try:
        assert _error_fields({"steps": 501}) == ["steps"]
        assert ExperimentSpec(steps=500).steps == 500
        assert ExperimentSpec().steps == 500
    finally:
        get_settings.cache_clear()


def test_stored_spec_round_trips():
    spec = ExperimentSpec(depth=3, teacher=[1.0, 1.0], tags=["a", "a", "b"])
    assert spec.tags == ["a", "b"]
    stored = parse_stored_spec(spec.model_dump(mode="json"))
    assert stored.model_dump(exclude={"teacher"}) == spec.model_dump(exclude={"teacher"})
    assert stored.teacher == pytest.approx(spec.teacher, rel=1e-15)


def test_networks_too_big_to_train_are_rejected_naming_the_field():
    assert _error_fields({"width": 10_000, "depth": 1000}) == ["width"]
    assert _error_fields({"depth": 1000, "dim": 5000}) == ["depth"]
    assert ExperimentSpec(depth=3, width=4000).width == 4000


def test_initial_end_to_end_matches_the_layers_product():
    from core import inits

    for spec in (
        ExperimentSpec(depth=3, init_vector=[2.0, -1.0]),
        ExperimentSpec(depth=4, width=6, dim=3, init="balanced", init_scale=0.3, seed=9),
        ExperimentSpec(depth=2, init="gaussian", init_scale=0.5),
    ):
        product = inits.end_to_end(inits.initial_layers(spec))
        assert inits.initial_end_to_end(spec) == pytest.approx(product, rel=1e-12)
