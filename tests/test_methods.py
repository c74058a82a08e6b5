"""Method parameters are declared once (sessionizer/methods.py): the core applies what the API
documents and accepts, default for default and bound for bound."""

from __future__ import annotations

from typing import Any

import pytest

from sessionizer.methods import METHODS
from tests.helpers import assert_problem
from worker.core import method_params

GOOD = {"users": ["romain"], "start": "2022-09-22T11:00Z", "end": "2022-09-28T12:00Z"}


@pytest.fixture
def documented(client) -> dict[str, dict[str, Any]]:
    schemas = client.get("/openapi.json").get_json()["components"]["schemas"]
    return {method: schemas[f"{method.capitalize()}Params"]["properties"] for method in METHODS}


def test_openapi_documents_every_parameter_with_the_default_the_core_applies(documented) -> None:
    assert documented["hdbscan"]["cluster_selection_epsilon_s"]["default"] == 1200
    for method, params in METHODS.items():
        assert set(documented[method]) == {p.name for p in params}
        applied = method_params(method, {})
        for name, prop in documented[method].items():
            if "default" in prop:
                assert method_params(method, {name: prop["default"]}) == applied, (method, name)
            else:  # a default derived from another parameter: said in words, and applied by the core
                assert (
                    "Default min_cluster_size" in prop["description"] and applied[name] == applied["min_cluster_size"]
                )


def test_api_and_core_accept_and_refuse_the_same_bounds(client) -> None:
    for method, params in METHODS.items():
        for p in params:
            if p.kind is bool:
                continue
            cases = [
                (p.minimum + (1 if p.exclusive_minimum else 0), True),
                (p.maximum, True),
                (p.maximum + 1, False),
                (p.minimum if p.exclusive_minimum else p.minimum - 1, False),
            ]
            for value, ok in cases:
                value = p.kind(value)
                resp = client.post("/jobs", json={**GOOD, "method": method, "params": {p.name: value}})
                if ok:
                    assert resp.status_code == 202, (method, p.name, value, resp.get_json())
                    method_params(method, {p.name: value})
                else:
                    body = assert_problem(resp, 422)
                    assert p.name in body["errors"]["params"], body
                    with pytest.raises(ValueError, match=p.name):
                        method_params(method, {p.name: value})
