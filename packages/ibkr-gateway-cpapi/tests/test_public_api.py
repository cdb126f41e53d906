"""Conventions as tests: the public surface, light imports, entry points, packaged seed data."""

import subprocess
import sys
from importlib.metadata import entry_points

import ibkr_gateway_cpapi
import ibkr_gateway_cpapi.simulator as simulator
from ibkr_gateway_core.backend import BACKEND_ENTRY_POINT_GROUP, load_backend_factory
from ibkr_gateway_cpapi.backend import open_client_portal_backend, open_fake_backend


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


def test_importing_the_backend_does_not_import_starlette_or_uvicorn() -> None:
    """`ibkr-agent health` loads the backend module; starlette comes only with fake mode's first call."""
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
