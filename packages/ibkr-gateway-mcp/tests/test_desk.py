"""The approval desk's pieces without a browser: cookies, CSRF, one-time links, PKCE, binds, notifications."""

import pytest
from ibkr_gateway_core.config import GatewayConfig
from ibkr_gateway_core.errors import ErrorCode, GatewayError
from ibkr_gateway_core.principal import Principal
from ibkr_gateway_mcp.desk.app import approver_principal, operator_principal
from ibkr_gateway_mcp.desk.notify import masked_account
from ibkr_gateway_mcp.desk.server import check_desk_bind, describe_desk
from ibkr_gateway_mcp.desk.sessions import DeskSessions, pkce_challenge

WHO = Principal(kind="remote", subject="alice", issuer="https://id.example.com", scopes=frozenset())


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_cookie_names_its_session_until_sign_out_or_expiry() -> None:
    clock = Clock()
    sessions = DeskSessions(b"k" * 32, ttl_seconds=60, clock=clock)
    session = sessions.start(WHO, "oidc")
    cookie = sessions.cookie_for(session)
    assert sessions.open(cookie) is session
    assert sessions.open(None) == "missing"
    flipped = cookie[:-2] + ("BB" if cookie.endswith("AA") else "AA")
    assert sessions.open(flipped) == "forged"
    assert sessions.open(session.session_id) == "forged"
    assert DeskSessions(b"o" * 32, ttl_seconds=60).open(cookie) == "forged"  # another key
    sessions.end(session)
    assert sessions.open(cookie) == "unknown"  # replayed after sign-out
    later = sessions.start(WHO, "oidc")
    clock.now += 61
    assert sessions.open(sessions.cookie_for(later)) == "expired"


def test_csrf_tokens_are_per_session() -> None:
    sessions = DeskSessions(b"k" * 32, ttl_seconds=60)
    one, two = sessions.start(WHO, "oidc"), sessions.start(WHO, "oidc")
    assert DeskSessions.csrf_ok(one, one.csrf_token)
    assert not DeskSessions.csrf_ok(one, two.csrf_token)
    assert not DeskSessions.csrf_ok(one, None)
    assert not DeskSessions.csrf_ok(one, "")


def test_a_login_lands_once_and_only_in_the_browser_that_started_it() -> None:
    sessions = DeskSessions(b"k" * 32, ttl_seconds=60)
    flight, binding = sessions.begin_flight()
    other, other_binding = sessions.begin_flight()
    assert sessions.land_flight(flight.state, other_binding) is None
    assert sessions.land_flight(flight.state, binding) == flight
    assert sessions.land_flight(flight.state, binding) is None  # replayed callback
    assert sessions.land_flight(other.state, other_binding) == other


def test_the_one_time_link_works_once() -> None:
    sessions = DeskSessions(b"k" * 32, ttl_seconds=60)
    token = sessions.new_local_link()
    assert not sessions.use_local_link("guess")
    assert sessions.use_local_link(token)
    assert not sessions.use_local_link(token)


def test_pkce_challenge_matches_rfc_7636() -> None:
    assert (
        pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk") == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    )


def test_binding_beyond_loopback_needs_an_https_public_url() -> None:
    config = GatewayConfig.fake_local()
    assert check_desk_bind(config, "127.0.0.1:0") == ("127.0.0.1", 0)
    with pytest.raises(GatewayError) as refused:
        check_desk_bind(config, "0.0.0.0:8090")
    assert refused.value.code is ErrorCode.CONFIG_INVALID
    behind = GatewayConfig.from_mapping({"desk": {"public_url": "https://desk.example.com"}})
    assert check_desk_bind(behind, "0.0.0.0:8090") == ("0.0.0.0", 8090)
    described = describe_desk(behind, "0.0.0.0:8090")
    assert described["url"] == "https://desk.example.com" and described["local_login"] is False


def test_desk_config_is_closed_and_checked() -> None:
    with pytest.raises(GatewayError) as plain_http:
        GatewayConfig.from_mapping({"desk": {"public_url": "http://desk.example.com"}})
    assert plain_http.value.code is ErrorCode.CONFIG_INVALID
    with pytest.raises(GatewayError) as no_client:
        GatewayConfig.from_mapping({"desk": {"oidc_issuer": "https://id.example.com"}})  # no client id
    assert no_client.value.code is ErrorCode.CONFIG_INVALID
    with pytest.raises(GatewayError) as unknown:
        GatewayConfig.from_mapping({"desk": {"unknown": 1}})
    assert unknown.value.code is ErrorCode.CONFIG_INVALID


def test_desk_principals() -> None:
    config = GatewayConfig.from_mapping(
        {"auth": {"approvers": [{"issuer": "https://id.example.com", "subject": "alice"}]}}
    )
    alice = approver_principal("alice", "https://id.example.com")
    assert config.is_approver(alice)
    assert not config.is_approver(approver_principal("alice", "https://other.example.com"))
    assert not config.is_approver(approver_principal("mallory", "https://id.example.com"))
    operator = operator_principal(config)
    assert operator.kind == "local_operator" and config.is_approver(operator)


def test_account_ids_are_masked() -> None:
    assert masked_account("DU1234567") == "••••4567"
    assert masked_account("DU1") == "••••"
