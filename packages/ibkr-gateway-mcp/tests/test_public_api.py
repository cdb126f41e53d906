import importlib

import ibkr_gateway_mcp
import pytest


def test_all_is_sorted_and_every_name_resolves() -> None:
    """The lazy package surface is explicit: sorted, and each name loads (our convention)."""
    assert ibkr_gateway_mcp.__all__ == sorted(ibkr_gateway_mcp.__all__)
    for name in ibkr_gateway_mcp.__all__:
        assert getattr(ibkr_gateway_mcp, name) is not None


def test_unknown_attribute_is_an_attribute_error() -> None:
    """The lazy loader does not invent names."""
    with pytest.raises(AttributeError):
        importlib.import_module("ibkr_gateway_mcp").no_such_name  # noqa: B018
