"""A stateful CPAPI simulator: real shapes and quirks, deterministic data, test hooks.

Importing this package imports starlette; the backend imports it only when fake mode is used.
"""

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
