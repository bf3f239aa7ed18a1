"""Hypothesis strategies for fuzzing: JSON shaped by the SDK's own request models.

`model_json(model)` walks a pydantic model's fields and draws JSON that mostly fits them, with
hostile values where a string goes (malformed ids, NUL, lone surrogates, huge text) and, now and
then, a value of another type altogether. The placeholders in `PLACEHOLDERS` stand for the ids of
real rows, substituted just before sending, so that requests also reach things that exist.
"""

from __future__ import annotations

import types
import typing
from enum import Enum
from inspect import isclass
from typing import Any

from hypothesis import strategies as st
from pydantic import BaseModel

PLACEHOLDERS = ("@thread@", "@item@", "@attachment@")

JSON_VALUES: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=6,
)

HOSTILE_TEXT = st.sampled_from(
    [
        "",
        " ",
        "\x00",
        "a\x00b",
        "\ud800",
        "\udfff\ud800",
        "\r\nX-Injected: 1",
        "thr_" + "0" * 61,
        "msg_' OR '1'='1",
        "atc_../../etc/passwd",
        "%00",
        "\u202e\u200b",
        "x" * 5000,
        "text/plain",
        "image/png",
        "text/pl\x7fain",
    ]
)

TEXT: st.SearchStrategy[str] = st.one_of(
    st.sampled_from(PLACEHOLDERS),
    HOSTILE_TEXT,
    st.from_regex(r"(thr|msg|atc|tc|wf|shcx|todo)_[0-9a-f]{1,44}", fullmatch=True),
    st.text(max_size=30),
)

INTEGERS = st.integers() | st.sampled_from([-1, 0, 1, 100, 101, 2**31, 2**63, -(2**63), 10**30])


def model_json(model: type[BaseModel]) -> st.SearchStrategy[dict[str, Any]]:
    """JSON objects with `model`'s fields (required ones always, optional ones sometimes)."""
    required: dict[str, st.SearchStrategy[Any]] = {}
    optional: dict[str, st.SearchStrategy[Any]] = {}
    hints = typing.get_type_hints(model, include_extras=True)  # the SDK's annotations are strings
    for name, field in model.model_fields.items():
        key, annotation = field.alias or name, hints.get(name, field.annotation)
        if typing.get_origin(annotation) is typing.Literal:
            required[key] = _typed(annotation)  # a discriminator: always there, and right
            continue
        value = _deferred(annotation)
        (required if field.is_required() else optional)[key] = value
    return st.fixed_dictionaries(required, optional=optional)


def _deferred(annotation: Any) -> st.SearchStrategy[Any]:
    """Built when first drawn: models may nest themselves."""
    return st.deferred(lambda: _value(annotation))


def _value(annotation: Any) -> st.SearchStrategy[Any]:
    """A value for `annotation`, or in about one case in twenty anything at all."""
    typed = _typed(annotation)
    return st.one_of(*[typed] * 19, JSON_VALUES)


def _typed(annotation: Any) -> st.SearchStrategy[Any]:
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if annotation in (Any, object):
        return JSON_VALUES
    if annotation is str:
        return TEXT
    if annotation is bool:
        return st.booleans()
    if annotation is int:
        return INTEGERS
    if annotation is float:
        return st.floats(allow_nan=False) | INTEGERS
    if annotation is type(None):
        return st.none()
    if origin is typing.Literal:
        return st.sampled_from(args)
    if origin is typing.Annotated:
        return _typed(args[0])
    if origin in (typing.Union, types.UnionType):
        return st.one_of([_typed(arg) for arg in args])
    if origin is list:
        return st.lists(_typed(args[0]) if args else JSON_VALUES, max_size=4)
    if origin is dict:
        return st.dictionaries(TEXT, _typed(args[1]) if args else JSON_VALUES, max_size=3)
    if isclass(annotation) and issubclass(annotation, Enum):
        return st.sampled_from([member.value for member in annotation])
    if isclass(annotation) and issubclass(annotation, BaseModel):
        return model_json(annotation)
    return JSON_VALUES
