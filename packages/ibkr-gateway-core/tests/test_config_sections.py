"""Absent configuration sections are validated as `{}`, with exactly the defaults their factories give."""

import typing

import pytest
from ibkr_gateway_core.config import SECTIONS, GatewayConfig, StateConfig
from ibkr_gateway_core.errors import ErrorCode, GatewayError
from pydantic import BaseModel, ValidationError


def _section_fields() -> dict[str, type[BaseModel]]:
    found: dict[str, type[BaseModel]] = {}
    for name, field in GatewayConfig.model_fields.items():
        kind = field.annotation
        if typing.get_origin(kind) is typing.Annotated:
            kind = typing.get_args(kind)[0]
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            found[name] = kind
    return found


def test_sections_names_every_model_field_of_the_root() -> None:
    """A new section must join `SECTIONS`, or it would be built twice again at start-up."""
    assert set(SECTIONS) == set(_section_fields())


def test_an_absent_section_equals_its_default_factory() -> None:
    """`{}` for an absent section gives what `Field(default_factory=...)` gave, section by section."""
    loaded = GatewayConfig.model_validate({})
    for name, kind in _section_fields().items():
        assert getattr(loaded, name) == kind(), name
    assert GatewayConfig.fake_local() == GatewayConfig(state=StateConfig())
    assert GatewayConfig.fake_local() == loaded


def test_a_given_section_is_kept_and_a_null_one_still_refused() -> None:
    """Only absent keys are filled: a section given stays as given, a null one fails as before."""
    loaded = GatewayConfig.model_validate({"broker": {"timeout_seconds": 3}})
    assert loaded.broker.timeout_seconds == 3
    with pytest.raises(ValidationError):
        GatewayConfig.model_validate({"broker": None})
    with pytest.raises(GatewayError) as refused:
        GatewayConfig.from_mapping({"auth": {"no_such_key": 1}})
    assert refused.value.code is ErrorCode.CONFIG_INVALID
