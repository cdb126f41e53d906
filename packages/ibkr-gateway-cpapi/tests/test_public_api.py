"""Conventions as tests: the public surface, light imports, entry points, packaged seed data."""

import subprocess
import sys
from importlib.metadata import EntryPoint, entry_points

import ibkr_gateway_cpapi
import ibkr_gateway_cpapi.simulator as simulator
import pytest
from ibkr_gateway_core.backend import BACKEND_ENTRY_POINT_GROUP, load_backend_factory
from ibkr_gateway_core.errors import ErrorCode, GatewayError
from ibkr_gateway_cpapi.backend import open_client_portal_backend, open_fake_backend, open_oauth_backend


def test_all_is_sorted_and_every_name_resolves() -> None:
    """A sorted, complete __all__ (style 1.1), including the lazily loaded names."""
    for module in (ibkr_gateway_cpapi, simulator):
        assert module.__all__ == sorted(module.__all__)
        for name in module.__all__:
            assert getattr(module, name) is not None


def test_entry_points_name_both_backends() -> None:
    """Core finds backends through the ibkr_gateway.backends group."""
    names = {ep.name for ep in entry_points(group=BACKEND_ENTRY_POINT_GROUP)}
    assert {"fake", "client_portal_gateway"} <= names
    assert load_backend_factory("fake") is open_fake_backend
    assert load_backend_factory("client_portal_gateway") is open_client_portal_backend


def test_a_built_in_backend_is_found_without_scanning_every_distribution(monkeypatch: pytest.MonkeyPatch) -> None:
    """`fake` comes from ibkr-gateway-cpapi's own metadata; other names still come from any distribution."""
    import ibkr_gateway_core.backend as backend_module

    def scan_refused(**_: object) -> list[EntryPoint]:
        raise AssertionError("scanned every distribution for a built-in backend")

    monkeypatch.setattr(backend_module, "entry_points", scan_refused)
    assert load_backend_factory("fake") is open_fake_backend
    assert load_backend_factory("cpapi_oauth") is open_oauth_backend

    third_party = EntryPoint(name="custom", value="ibkr_gateway_cpapi.backend:open_fake_backend", group="x")

    def scan(**_: object) -> list[EntryPoint]:
        return [third_party]

    monkeypatch.setattr(backend_module, "entry_points", scan)
    assert load_backend_factory("custom") is open_fake_backend
    with pytest.raises(GatewayError) as missing:
        load_backend_factory("nowhere")
    assert missing.value.code is ErrorCode.CONFIG_BACKEND_NOT_INSTALLED


def test_importing_the_backend_does_not_import_starlette_or_uvicorn() -> None:
    """`ibkr-agent health` loads the backend module; starlette comes only with fake mode's websocket."""
    code = (
        "import sys\n"
        "from ibkr_gateway_core.config import GatewayConfig\n"
        "import ibkr_gateway_cpapi\n"
        "from ibkr_gateway_cpapi.backend import open_fake_backend\n"
        "open_fake_backend(GatewayConfig.fake_local())\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('starlette', 'uvicorn'))\n"
        "assert not heavy, heavy\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, encoding="utf-8", timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr


def test_seed_data_is_package_data() -> None:
    """Fake mode must work from a wheel: the seed is read with importlib.resources."""
    from importlib.resources import files

    data = files("ibkr_gateway_cpapi.simulator") / "data"
    assert sorted(p.name for p in data.iterdir() if p.name.endswith(".json")) == [
        "accounts.json",
        "book.json",
        "contracts.json",
    ]
