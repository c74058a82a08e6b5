"""``<Method>ParamsSchema``: each sessionization method's parameters, generated from their one
declaration (``Param`` in ``sessionizer/methods.py``): bounds, defaults and OpenAPI text."""

from __future__ import annotations

from typing import Any

from marshmallow import RAISE, Schema, fields, validate

from sessionizer.methods import METHODS as SPECS
from sessionizer.methods import Param, describe

from .fields import StrictBoolean, StrictInteger, StrictNumber


def param_field(param: Param) -> fields.Field:
    """The marshmallow field of a method parameter, with its bounds and documented default."""
    meta: dict[str, Any] = {"description": describe(param)}
    if param.default is not None or param.default_text is None:  # a derived default is only said in words
        meta["default"] = param.default
    if param.exclusive_minimum:  # apispec writes the bound but not that it is excluded
        meta["exclusiveMinimum"] = True
    if param.kind is bool:
        return StrictBoolean(metadata=meta)
    bounds = validate.Range(min=param.minimum, max=param.maximum, min_inclusive=not param.exclusive_minimum)
    if param.kind is int:
        return StrictInteger(allow_none=param.nullable, validate=bounds, metadata=meta)
    return StrictNumber(allow_none=param.nullable, validate=bounds, metadata=meta)


def params_schema(method: str) -> type[Schema]:
    """``<Method>ParamsSchema``: the method's parameters as declared in sessionizer/methods.py."""
    declared: dict[str, Any] = {p.name: param_field(p) for p in SPECS[method]}
    meta = type("Meta", (), {"unknown": RAISE})
    name = f"{method.capitalize()}ParamsSchema"
    return type(
        name,
        (Schema,),
        {**declared, "Meta": meta, "__doc__": f"Parameters of the ``{method}`` method (see worker/core/README.md)."},
    )


PARAMS_SCHEMAS: dict[str, type[Schema]] = {method: params_schema(method) for method in SPECS}
HdbscanParamsSchema = PARAMS_SCHEMAS["hdbscan"]
GapParamsSchema = PARAMS_SCHEMAS["gap"]
