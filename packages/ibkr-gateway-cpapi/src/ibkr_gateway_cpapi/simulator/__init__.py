"""A stateful CPAPI simulator: real shapes and quirks, deterministic data, test hooks.

The names below load on first use: the embedded simulator of fake mode imports the modules it runs
(its state and app) and never the OAuth authority of `simulator serve --oauth`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ibkr_gateway_core._lazy import lazy_exports

if TYPE_CHECKING:
    from ._book import SimAccount, SimBook, SimContract, SimExecution, SimOrder, SimPosition, SimProfile, load_seed_book
    from ._clock import ScaledClock
    from ._oauth import ConsumerFiles, OAuthAuthority, OAuthConsumer, write_test_credentials
    from ._pacing import DEFAULT_PACING_RULES, Pacer, PacingRule
    from ._session import AuthState, SimConnectionDropped, SimHttpError, SimRequest
    from ._tickets import DEFAULT_QUESTION_RULES, OrderTicket, QuestionRule
    from .app import create_simulator_app
    from .state import SimulatorState

__all__ = [
    "AuthState",
    "ConsumerFiles",
    "DEFAULT_PACING_RULES",
    "DEFAULT_QUESTION_RULES",
    "OAuthAuthority",
    "OAuthConsumer",
    "OrderTicket",
    "Pacer",
    "PacingRule",
    "QuestionRule",
    "ScaledClock",
    "SimAccount",
    "SimBook",
    "SimConnectionDropped",
    "SimContract",
    "SimExecution",
    "SimHttpError",
    "SimOrder",
    "SimPosition",
    "SimProfile",
    "SimRequest",
    "SimulatorState",
    "create_simulator_app",
    "load_seed_book",
    "write_test_credentials",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "AuthState": "_session",
        "ConsumerFiles": "_oauth",
        "DEFAULT_PACING_RULES": "_pacing",
        "DEFAULT_QUESTION_RULES": "_tickets",
        "OAuthAuthority": "_oauth",
        "OAuthConsumer": "_oauth",
        "OrderTicket": "_tickets",
        "Pacer": "_pacing",
        "PacingRule": "_pacing",
        "QuestionRule": "_tickets",
        "ScaledClock": "_clock",
        "SimAccount": "_book",
        "SimBook": "_book",
        "SimConnectionDropped": "_session",
        "SimContract": "_book",
        "SimExecution": "_book",
        "SimHttpError": "_session",
        "SimOrder": "_book",
        "SimPosition": "_book",
        "SimProfile": "_book",
        "SimRequest": "_session",
        "SimulatorState": "state",
        "create_simulator_app": "app",
        "load_seed_book": "_book",
        "write_test_credentials": "_oauth",
    },
)
