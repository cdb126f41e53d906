"""The approval desk in a real browser: headless Chromium (Debian's `chromium` + `chromium-driver`, driven
by Selenium) against `ibkr-agent desk serve` and a real OpenID provider (npm `oidc-provider`).

An agent (a remote principal, through the `Gateway` door like the remote MCP server) previews orders;
a person signs in through the provider, sees them, approves one (the agent's paper submit then works),
denies another, and closes the kill switch (the agent's live submit is then refused). The attacks:
a form without its CSRF token or from another origin, a forged and a replayed cookie, a replayed
one-time link, a non-approver's sign-in, a preview changed after the page showed it, and an approver
approving their own preview: each is refused with its code and audited.

Chromium missing is a failure, never a skip (`.ci/run` installs it). With `IBKR_DESK_SCREENSHOTS=DIR`
the pages are saved as PNGs into DIR (`scripts/desk_screenshots.sh` refreshes the docs' images).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import anyio
import httpx2
import pytest
from cli_harness import AUDIT_KEY_ENV, ibkr_agent, run_cli
from ibkr_gateway_core.config import GatewayConfig
from ibkr_gateway_core.errors import GatewayError
from ibkr_gateway_core.gateway import Gateway
from ibkr_gateway_core.orders import OrderTicket
from ibkr_gateway_core.principal import Principal
from ibkr_gateway_core.scopes import WITH_LIVE
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
OIDC_DIR = HERE / ".oidc"
CLIENT_ID = "approval-desk"
CLIENT_SECRET = "desk-client-secret-0123456789abcdef"
SECRET_ENV = "IBKR_TEST_DESK_CLIENT_SECRET"
PAPER_ACCOUNT = "DU1234567"
APPROVER = "alice"
AGENT = "agent-7"
"""The agent's subject; also listed as an approver, to prove it still cannot approve its own previews."""
SHOTS = os.environ.get("IBKR_DESK_SCREENSHOTS")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _install_provider() -> Path:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.fail("node and npm are needed to run the oidc-provider OpenID provider")
    if not (OIDC_DIR / "node_modules" / "oidc-provider").is_dir():
        OIDC_DIR.mkdir(exist_ok=True)
        subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--no-save", "oidc-provider@9"],
            cwd=OIDC_DIR,
            check=True,
            capture_output=True,
            timeout=300,
        )
    script = OIDC_DIR / "desk_provider.mjs"  # beside node_modules, so node resolves the package
    shutil.copyfile(HERE / "desk_oidc_provider.mjs", script)
    return script


class _Hook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]]

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length", "0"))
        body = self.rfile.read(length)
        self.server.received.append(  # type: ignore[attr-defined]
            {"path": self.path, "headers": dict(self.headers), "body": body.decode("utf-8", "replace")}
        )
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        return


@dataclass
class DeskRig:
    """A running provider, desk and webhook receiver, and the agent's gateway door."""

    config_path: Path
    config: GatewayConfig
    env: dict[str, str]
    issuer: str
    desk_url: str
    local_link: str
    hooks: list[dict[str, Any]]

    def agent(self, name: str, arguments: dict[str, object] | None = None, *, subject: str = AGENT) -> Any:
        """One gateway operation as the agent (a remote principal, as the remote MCP server makes it)."""
        principal = Principal(kind="remote", subject=subject, issuer=self.issuer, scopes=WITH_LIVE)

        async def run() -> Any:
            async with Gateway.from_config(self.config, principal=principal) as gateway:
                return (await gateway.call(name, arguments or {})).value

        return anyio.run(run)

    def preview(self, quantity: int, limit_price: str = "190", *, subject: str = AGENT) -> Any:
        """A limit buy of AAPL previewed by the agent."""
        arguments = {
            "account_id": PAPER_ACCOUNT,
            "symbol": "AAPL",
            "side": "buy",
            "quantity": quantity,
            "order_type": "limit",
            "limit_price": limit_price,
        }
        return self.preview_with(arguments, subject=subject)

    def preview_with(self, arguments: dict[str, object], *, subject: str = AGENT) -> Any:
        return self.agent("preview_order", arguments, subject=subject)

    def audit(self, limit: int = 400) -> list[dict[str, Any]]:
        result = run_cli(
            ["--config", str(self.config_path), "audit", "tail", "--limit", str(limit), "--json"], self.env
        )
        assert result.returncode == 0, result.stderr
        return [record["event"] for record in json.loads(result.stdout)["events"]]


def _config(tmp_path: Path, issuer: str, desk_port: int, hook_port: int) -> Path:
    path = tmp_path / "desk.yaml"
    path.write_text(
        f"""
auth:
  enabled_scopes: [with_live]
  approvers:
    - {{issuer: "{issuer}", subject: {APPROVER}}}
    - {{issuer: "{issuer}", subject: {AGENT}}}
audit:
  hmac_secret_env: {AUDIT_KEY_ENV}
state:
  directory: desk-state
orders:
  preview_enabled: true
  paper_enabled: true
safety:
  live_trading_enabled: true
live_trading:
  enabled: true
  allowed_accounts: [{PAPER_ACCOUNT}]
  risk_policy_id: desk-live
  paper_to_live_checklist_acknowledged: true
  writer: local-candidate
risk_policies:
  - policy_id: desk-live
    max_quantity: 100
    max_notional: 50000
    max_orders_per_day: 20
    max_notional_per_day: 200000
desk:
  oidc_issuer: {issuer}
  oidc_client_id: {CLIENT_ID}
  oidc_client_secret_env: {SECRET_ENV}
  oidc_scopes: [openid, profile]
  refresh_seconds: 1
  notify_webhook_url: http://127.0.0.1:{hook_port}/hook
  notify_ntfy_url: http://127.0.0.1:{hook_port}/ntfy/desk-topic
""",
        encoding="utf-8",
    )
    return path


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DeskRig]:
    tmp_path = tmp_path_factory.mktemp("desk")
    script = _install_provider()
    desk_port = _free_port()
    hooks: list[dict[str, Any]] = []
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    receiver.received = hooks  # type: ignore[attr-defined]
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    provider_env = {
        "PATH": os.environ.get("PATH", ""),
        "CLIENT_ID": CLIENT_ID,
        "CLIENT_SECRET": CLIENT_SECRET,
        "REDIRECT_URI": f"http://127.0.0.1:{desk_port}/callback",
    }
    provider = subprocess.Popen(
        ["node", str(script)],
        cwd=OIDC_DIR,
        env=provider_env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        encoding="utf-8",
    )
    desk: subprocess.Popen[str] | None = None
    try:
        assert provider.stdout is not None
        issuer = provider.stdout.readline().strip()
        assert issuer.startswith("http://127.0.0.1:"), issuer
        config_path = _config(tmp_path, issuer, desk_port, receiver.server_address[1])
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(tmp_path / "home"),
            AUDIT_KEY_ENV: "integration-test-audit-key-0123456789abcdef",
            SECRET_ENV: CLIENT_SECRET,
            "PYTHONWARNDEFAULTENCODING": "1",
        }
        os.environ[AUDIT_KEY_ENV] = env[AUDIT_KEY_ENV]
        command = [*ibkr_agent(), "--config", str(config_path), "desk", "serve", "--bind", f"127.0.0.1:{desk_port}"]
        desk = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, encoding="utf-8")
        assert desk.stdout is not None
        desk_url = desk.stdout.readline().strip()
        link_line = desk.stdout.readline().strip()
        assert desk_url == f"http://127.0.0.1:{desk_port}", (desk_url, desk.stderr.read() if desk.poll() else "")
        local_link = link_line.rsplit(" ", 1)[-1]
        assert local_link.startswith(f"{desk_url}/login/local?token=")
        yield DeskRig(config_path, GatewayConfig.load(config_path), env, issuer, desk_url, local_link, hooks)
    finally:
        if desk is not None:
            desk.terminate()
            desk.communicate(timeout=15)
        if provider.stdin is not None:
            provider.stdin.close()
        provider.terminate()
        provider.wait(timeout=15)
        if provider.stdout is not None:
            provider.stdout.close()
        receiver.shutdown()
        receiver.server_close()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    """Headless Debian Chromium that resolves no host but 127.0.0.1: nothing leaves this machine."""
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.fail("chromium and chromium-driver are needed: apt-get install -y chromium chromium-driver")
    options = Options()
    options.binary_location = chromium
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,1000",
        "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-default-apps",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'chromium'}",
    ):
        options.add_argument(argument)
    os.environ.setdefault("SE_OFFLINE", "true")
    web = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    web.set_page_load_timeout(30)
    try:
        yield web
    finally:
        web.quit()


T = TypeVar("T")


def _reloaded_under(exc: WebDriverException) -> bool:
    """The page reloaded itself (it does on every change) between finding an element and using it.

    Chromedriver says so as a stale element, or as an unknown error naming a node that left the document.
    """
    return isinstance(exc, StaleElementReferenceException) or "does not belong to the document" in (exc.msg or "")


def _again(action: Callable[[], T], timeout: float = 20) -> T:
    """Run a find-and-use step, again from the find when the page reloaded under it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return action()
        except WebDriverException as exc:
            if not _reloaded_under(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _type(web: WebDriver, css: str, text: str) -> None:
    """Type into a field, again from the find if the page reloaded first; once the field holds a value and has
    the focus the page stops reloading itself (`assets.JS`), so the click that follows meets the same page."""
    _again(lambda: web.find_element(By.CSS_SELECTOR, css).send_keys(text))


def _wait(web: WebDriver, condition: Callable[[WebDriver], Any], timeout: float = 20) -> Any:
    def settled(driver: WebDriver) -> Any:
        try:
            return condition(driver)
        except WebDriverException as exc:
            if _reloaded_under(exc):
                return False
            raise

    return WebDriverWait(web, timeout, poll_frequency=0.2).until(settled)


def _shot(web: WebDriver, name: str) -> None:
    if not SHOTS:
        return
    height = web.execute_script("return document.documentElement.scrollHeight")
    web.set_window_size(1280, max(700, min(int(height) + 40, 4000)))
    Path(SHOTS).mkdir(parents=True, exist_ok=True)
    web.save_screenshot(str(Path(SHOTS) / f"desk-{name}.png"))
    web.set_window_size(1280, 1000)


def _sign_in(web: WebDriver, rig: DeskRig, subject: str, *, shot: bool = False) -> None:
    web.delete_all_cookies()
    web.get(rig.desk_url + "/")
    if shot:
        _shot(web, "sign-in")
    web.find_element(By.ID, "login-oidc").click()
    _wait(web, lambda w: w.find_elements(By.ID, "login"))
    web.find_element(By.ID, "login").send_keys(subject)
    web.find_element(By.ID, "sign-in").click()
    _wait(
        web,
        lambda w: (
            w.current_url.startswith(rig.desk_url)
            and (w.find_elements(By.ID, "who") or w.find_elements(By.ID, "refusal"))
        ),
    )


def _flash(web: WebDriver, expected: str) -> str:
    """The outcome message once it says `expected`: right after a click the previous page's message may still show."""
    return _wait(web, lambda w: (text := w.find_element(By.CSS_SELECTOR, ".flash").text) and expected in text and text)


def _refusals(rig: DeskRig, code: str) -> list[dict[str, Any]]:
    return [event for event in rig.audit() if event.get("error_code") == code]


def test_a_person_approves_denies_and_halts_in_the_browser(rig: DeskRig, browser: WebDriver) -> None:
    """Sign in, see a pending preview with its context, approve, deny, close the kill switch."""
    first = rig.preview(10)
    _sign_in(browser, rig, APPROVER, shot=True)
    _wait(browser, lambda w: w.find_element(By.ID, f"preview-{first.preview_id}"))

    def shown() -> tuple[str, str | None, str, int, str, str]:  # read in one go, from the page as it is now
        card = browser.find_element(By.ID, f"preview-{first.preview_id}")
        verdict = card.find_element(By.CSS_SELECTOR, ".verdict").get_attribute("class") or ""
        failing = len(card.find_elements(By.CSS_SELECTOR, "table.checks tr.fail"))
        who = browser.find_element(By.ID, "who").text
        return card.text.lower(), card.get_attribute("data-fingerprint"), verdict, failing, who, browser.page_source

    text, fingerprint, verdict, failing, who, source = _again(shown)
    assert "buy 10 aapl" in text and AGENT in text and "worst-case exposure" in text
    assert "fresh quote" in text and "commission" in text and "risk checks" in text
    assert PAPER_ACCOUNT not in source  # masked: only the last four characters
    assert fingerprint == first.fingerprint
    assert "pass" in verdict  # the core's policy passes on the fresh quote...
    assert failing == 0  # ...and so does every row shown
    assert who.startswith(APPROVER)

    # a second preview arrives while the page is open: the page shows it by itself
    second = rig.preview(5, "189.5")
    _wait(browser, lambda w: w.find_elements(By.ID, f"preview-{second.preview_id}"))
    _shot(browser, "pending")

    # the person was told, with a link and without the account id
    deadline = time.monotonic() + 30  # both notifications (the webhook and ntfy), however loaded the machine
    while time.monotonic() < deadline and {"/hook", "/ntfy/desk-topic"} - {
        h["path"] for h in rig.hooks if second.preview_id in h["body"]
    }:
        time.sleep(0.2)
    hooks = [h for h in rig.hooks if second.preview_id in h["body"]]
    webhook = next(json.loads(h["body"]) for h in hooks if h["path"] == "/hook")
    assert webhook["url"] == f"{rig.desk_url}/#preview-{second.preview_id}" and webhook["agent"] == AGENT
    ntfy = next(h for h in hooks if h["path"] == "/ntfy/desk-topic")
    assert ntfy["headers"]["Click"] == webhook["url"] and "BUY 5 AAPL" in ntfy["body"]
    assert all(PAPER_ACCOUNT not in h["body"] for h in rig.hooks)

    # approve the first: the agent's paper submit goes through
    _type(browser, f"#preview-{first.preview_id} select[name=ttl_seconds]", "15 min")
    browser.find_element(By.ID, f"approve-{first.preview_id}").click()
    assert "Approved BUY 10 AAPL" in _flash(browser, "Approved BUY 10 AAPL")
    approvals = rig.agent("list_approvals", {"limit": 5})
    approval = next(a for a in approvals if a.preview_id == first.preview_id)
    assert (approval.approved_by, approval.approved_by_kind) == (APPROVER, "remote")
    submitted = rig.agent(
        "submit_paper_order",
        {"account_id": PAPER_ACCOUNT, "approval_id": approval.approval_id, "idempotency_key": "desk-approved-1"},
    )
    assert submitted.mode == "paper" and submitted.approval_id == approval.approval_id

    # deny the second: it can never be approved
    _type(browser, f"#preview-{second.preview_id} input[name=reason]", "Too close to the open")
    browser.find_element(By.ID, f"deny-{second.preview_id}").click()
    assert "Denied preview" in _flash(browser, "Denied preview")
    with pytest.raises(GatewayError) as denied:
        rig.agent("create_approval", {"account_id": PAPER_ACCOUNT, "preview_id": second.preview_id}, subject=APPROVER)
    assert denied.value.code == "PREVIEW_DENIED"
    assert not browser.find_elements(By.ID, f"preview-{second.preview_id}")

    # the kill switch: the operator opened it; the person closes it; the agent's live order is refused
    opened = run_cli(["--config", str(rig.config_path), "kill-switch", "open", "--reason", "market open"], rig.env)
    assert opened.returncode == 0, opened.stderr
    live = rig.preview(2)
    browser.get(rig.desk_url + "/")
    _wait(browser, lambda w: w.find_element(By.ID, "kill-switch-pill").text == "Live trading allowed")
    _type(browser, f"#preview-{live.preview_id} select[name=mode]", "live")
    browser.find_element(By.ID, f"approve-{live.preview_id}").click()
    assert "Approved BUY 2 AAPL" in _flash(browser, "Approved BUY 2 AAPL")
    live_approval = next(a for a in rig.agent("list_approvals", {"limit": 5}) if a.preview_id == live.preview_id)
    _type(browser, "#kill-switch input[name=reason]", "Agent misbehaving")
    browser.find_element(By.ID, "kill-switch-close").click()
    assert "kill switch is closed" in _flash(browser, "kill switch is closed")
    assert browser.find_element(By.ID, "kill-switch-pill").text == "Kill switch CLOSED"
    _shot(browser, "halted")
    with pytest.raises(GatewayError) as halted:
        rig.agent(
            "submit_live_order",
            {"account_id": PAPER_ACCOUNT, "approval_id": live_approval.approval_id, "idempotency_key": "desk-live-1"},
        )
    assert halted.value.code == "LIVE_KILL_SWITCH_CLOSED"

    # the other pages: decisions, orders and fills, limits, one order's audit trail
    browser.get(rig.desk_url + "/history")
    assert "denied" in browser.page_source and "Too close to the open" in browser.page_source
    _shot(browser, "decisions")
    browser.get(rig.desk_url + "/orders")
    assert submitted.broker_order_id in browser.page_source
    _shot(browser, "orders")
    browser.get(rig.desk_url + "/limits")
    assert "desk-live" in browser.page_source
    _shot(browser, "limits")
    browser.get(rig.desk_url + f"/audit/{first.preview_id}")
    trail = browser.find_element(By.TAG_NAME, "tbody").text
    for event_type in ("order_preview_created", "approval_created", "paper_order_submitted"):
        assert event_type in trail
    assert APPROVER in trail and AGENT in trail
    _shot(browser, "audit")

    # every desk action is in the audit log under the person's name
    events = rig.audit()
    mine = {(e["event_type"], e["principal_subject"], e["principal_client_id"]) for e in events}
    for event_type in ("approval_created", "preview_denied", "kill_switch_changed", "desk_login_succeeded"):
        assert (event_type, APPROVER, CLIENT_ID) in mine
    assert any(e["event_type"] == "desk_notification_sent" for e in events)


def _cookie(web: WebDriver) -> str:
    found = web.get_cookie("ibkr_desk_session")
    assert found is not None
    assert found["httpOnly"] and found["sameSite"] == "Strict"
    return str(found["value"])


def _post(url: str, form: dict[str, str], cookie: str, *, origin: str | None = None) -> httpx2.Response:
    headers = {"origin": origin} if origin else {}
    with httpx2.Client(timeout=10, follow_redirects=False, cookies={"ibkr_desk_session": cookie}) as http:
        return http.post(url, data=form, headers=headers)


def test_forms_without_the_token_and_forged_or_replayed_cookies_are_refused(rig: DeskRig, browser: WebDriver) -> None:
    target = rig.preview(3)
    _sign_in(browser, rig, APPROVER)
    cookie = _cookie(browser)
    csrf = browser.find_element(By.NAME, "csrf_token").get_attribute("value")
    url = f"{rig.desk_url}/previews/{target.preview_id}/approve"
    form = {"fingerprint": target.fingerprint, "ttl_seconds": "300"}
    session_id = cookie.split(".")[0]
    no_token = _post(url, form, cookie)
    wrong_origin = _post(url, {**form, "csrf_token": csrf}, cookie, origin="http://evil.example")
    forged = _post(url, {**form, "csrf_token": csrf}, f"{session_id}.AAAA")
    with httpx2.Client(timeout=10, cookies={"ibkr_desk_session": "x" * 43 + ".bm90LWEtc2lnbmF0dXJl"}) as http:
        made_up = http.get(rig.desk_url + "/")
    assert no_token.status_code == 403 and "DESK_CSRF_INVALID" in no_token.text
    assert wrong_origin.status_code == 403 and "DESK_CSRF_INVALID" in wrong_origin.text
    assert forged.status_code == 401 and "DESK_SESSION_INVALID" in forged.text
    assert made_up.status_code == 401 and "DESK_SESSION_INVALID" in made_up.text
    assert all(a.preview_id != target.preview_id for a in rig.agent("list_approvals", {"limit": 20}))

    # sign out, then replay the old cookie
    browser.find_element(By.CSS_SELECTOR, "form[action='/logout'] button").click()
    _wait(browser, lambda w: w.find_elements(By.ID, "login-oidc"))
    replayed = _post(url, {**form, "csrf_token": csrf}, cookie)
    with httpx2.Client(timeout=10, follow_redirects=False) as http:
        first_use = http.get(rig.local_link)
        second_use = http.get(rig.local_link)
    assert replayed.status_code == 401 and "DESK_SESSION_INVALID" in replayed.text
    assert first_use.status_code == 200 and "ibkr_desk_session" in first_use.headers.get("set-cookie", "")
    assert second_use.status_code == 403 and "DESK_LOGIN_REFUSED" in second_use.text

    csrf_events = _refusals(rig, "DESK_CSRF_INVALID")
    assert {e["principal_subject"] for e in csrf_events} == {APPROVER}
    assert len(csrf_events) >= 2
    session_events = _refusals(rig, "DESK_SESSION_INVALID")
    assert len(session_events) >= 3 and {e["principal_subject"] for e in session_events} == {"anonymous"}
    assert cookie not in json.dumps(rig.audit())


def test_a_non_approver_cannot_sign_in(rig: DeskRig, browser: WebDriver) -> None:
    _sign_in(browser, rig, "mallory")
    assert "DESK_LOGIN_REFUSED" in browser.find_element(By.ID, "refusal").text
    _shot(browser, "not-an-approver")
    assert browser.get_cookie("ibkr_desk_session") is None
    refused = _refusals(rig, "DESK_LOGIN_REFUSED")
    assert any(e["principal_subject"] == "mallory" for e in refused)


def _tamper(rig: DeskRig, preview_id: str) -> None:
    """Change the stored order behind the page's back: ten times the quantity, fingerprint recomputed."""
    database = rig.config.audit_path()
    with sqlite3.connect(database) as db:
        payload = json.loads(
            db.execute("SELECT payload FROM order_previews WHERE preview_id = ?", (preview_id,)).fetchone()[0]
        )
        payload["ticket"]["quantity"] = str(Decimal(payload["ticket"]["quantity"]) * 10)
        payload["fingerprint"] = OrderTicket.model_validate(payload["ticket"]).fingerprint()
        db.execute(
            "UPDATE order_previews SET payload = ?, fingerprint = ? WHERE preview_id = ?",
            (json.dumps(payload), payload["fingerprint"], preview_id),
        )


def test_a_preview_changed_after_the_page_showed_it_is_refused(rig: DeskRig, browser: WebDriver) -> None:
    target = rig.preview(4)
    _sign_in(browser, rig, APPROVER)
    _wait(browser, lambda w: w.find_elements(By.ID, f"approve-{target.preview_id}"))
    _tamper(rig, target.preview_id)
    browser.find_element(By.ID, f"approve-{target.preview_id}").click()
    message = _flash(browser, "APPROVAL_PREVIEW_MISMATCH")
    assert "APPROVAL_PREVIEW_MISMATCH" in message
    _shot(browser, "refused")
    assert all(a.preview_id != target.preview_id for a in rig.agent("list_approvals", {"limit": 50}))
    refused = _refusals(rig, "APPROVAL_PREVIEW_MISMATCH")
    assert any(e["principal_subject"] == APPROVER and e["event_type"] == "tool_refused" for e in refused)


def test_an_approver_never_approves_their_own_preview(rig: DeskRig, browser: WebDriver) -> None:
    own = rig.preview(6)  # previewed by AGENT, who is also listed as an approver
    _sign_in(browser, rig, AGENT)
    _wait(browser, lambda w: w.find_elements(By.ID, f"approve-{own.preview_id}"))
    browser.find_element(By.ID, f"approve-{own.preview_id}").click()
    assert "APPROVAL_SELF_FORBIDDEN" in _flash(browser, "APPROVAL_SELF_FORBIDDEN")
    assert all(a.preview_id != own.preview_id for a in rig.agent("list_approvals", {"limit": 50}))
    refused = _refusals(rig, "APPROVAL_SELF_FORBIDDEN")
    assert any(e["principal_subject"] == AGENT and e["principal_client_id"] == CLIENT_ID for e in refused)
