"""Interactive Brokers Client Portal Web API backend of ibkr-agent-gateway, and its CPAPI simulator.

Importing this package stays light: the simulator (and starlette) load on first use of
`create_simulator_app` or `SimulatorState`, the order writer on first use of `ClientPortalOrderWriter`
(reads never need it), and `serve_simulator` loads uvicorn only when called.
"""

from typing import TYPE_CHECKING

from .backend import CpapiBackend, open_client_portal_backend, open_fake_backend, open_simulator_backend
from .client import BrokerHttpError, CpapiClient

if TYPE_CHECKING:
    from .serve import serve_simulator, serving_simulator
    from .simulator import SimulatorState, create_simulator_app
    from .writer import ClientPortalOrderWriter

__all__ = [
    "BrokerHttpError",
    "ClientPortalOrderWriter",
    "CpapiBackend",
    "CpapiClient",
    "SimulatorState",
    "create_simulator_app",
    "open_client_portal_backend",
    "open_fake_backend",
    "open_simulator_backend",
    "serve_simulator",
    "serving_simulator",
]

_LAZY = {
    "ClientPortalOrderWriter": "writer",
    "SimulatorState": "simulator",
    "create_simulator_app": "simulator",
    "serve_simulator": "serve",
    "serving_simulator": "serve",
}


def __getattr__(name: str) -> object:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f".{module_name}", __name__), name)
