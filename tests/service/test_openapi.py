"""/openapi.json is worth reading: every spec field says what it is and shows a value, the
paper's run is an example body, and every route declares the errors it can answer with."""

from __future__ import annotations

import pytest

from core.spec import ExperimentSpec

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
"""The schema is the code's, not the database's."""
ERROR_BODIES = {
    "#/components/schemas/ErrorMessage",
    "#/components/schemas/LimitMessage",
    "#/components/schemas/HTTPValidationError",
}


@pytest.fixture
def schema(client) -> dict:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    return response.json()


def _operations(schema: dict):
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            yield path, method, operation


@SQLITE_ONLY
def test_every_spec_field_has_a_description_and_an_example(schema):
    fields = schema["components"]["schemas"]["ExperimentSpec"]["properties"]
    assert set(fields) == set(ExperimentSpec.model_fields)
    for name, field in fields.items():
        assert len(field.get("description", "")) > 10, name
        assert field.get("examples"), name


@SQLITE_ONLY
def test_every_example_body_of_post_experiments_is_accepted(schema, client):
    body = schema["paths"]["/experiments"]["post"]["requestBody"]
    assert body["required"] is True
    examples = body["content"]["application/json"]["examples"]
    paper = examples["paper"]["value"]
    assert paper["depth"] == 4 and paper["init_vector"] == [0.6, 0.8]
    assert paper["optimizer"] == "sgd" and paper["loss"] == "logistic"
    for name, example in examples.items():
        response = client.post("/experiments", json=example["value"])
        assert response.status_code == 201, (name, response.text)


@SQLITE_ONLY
def test_every_route_declares_its_error_statuses_with_their_bodies(schema):
    for path, method, operation in _operations(schema):
        where = f"{method.upper()} {path}"
        declared = set(operation["responses"])
        expected = {"413", "503"}
        if path != "/healthz":
            expected |= {"401", "403", "429"}
        if "{" in path:
            expected.add("404")
        if operation.get("parameters") or operation.get("requestBody"):
            expected.add("422")
        if path.endswith("/cancel"):
            expected.add("409")
        assert expected <= declared, (where, expected - declared)
        for status in declared - {"200", "201", "202", "204"}:
            content = operation["responses"][status]["content"]["application/json"]
            assert content["schema"]["$ref"] in ERROR_BODIES, (where, status)
        for status in {"429", "503"} & declared:
            assert "Retry-After" in operation["responses"][status]["headers"], (where, status)
