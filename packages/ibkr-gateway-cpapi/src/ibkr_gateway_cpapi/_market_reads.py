"""The trading-desk reads of `CpapiBackend` (core's `MarketBackend`).

P&L, account metadata, session renewal, options, scanner, schedules, FX, order history,
transactions, depth and fundamentals.

Each read calls the real CPAPI endpoint and maps its real shape: numbers that arrive as formatted
strings (`"1,234.50"`, `"3.26T"`, `"0.45%"`), fields that are missing until data flows, and empty
answers. Nothing is made up: a field the broker did not send stays None.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Final, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import anyio
from ibkr_gateway_core.errors import ErrorCode, GatewayError
from ibkr_gateway_core.models import BrokerSessionStatus, DataStatus, OrderRecord

from . import _mapping as mapping
from . import _wire as wire
from ._accounts import AccountSelection
from .client import BrokerHttpError, CpapiClient
from .ws import WsConnector, first_frame

if TYPE_CHECKING:  # each read imports its models when it runs: an accounts read never loads them
    from ibkr_gateway_core.market.models import (
        AccountMetadata,
        CurrencyPnl,
        CurrencyRate,
        DailyPnl,
        DepthLevel,
        Fundamentals,
        MarketDepth,
        MarketSchedule,
        OptionChain,
        OptionExpirations,
        OptionGreeks,
        OptionQuote,
        OptionStrikes,
        PnlBreakdown,
        ScannerLocation,
        ScannerParams,
        ScannerResult,
        ScannerRow,
        TradingDay,
        TradingSession,
        Transaction,
        TransactionHistory,
    )
    from ibkr_gateway_core.market.requests import OptionChainInput, ScannerRunInput


OPTION_FIELDS: Final = "31,84,86,6509,7308,7309,7310,7311,7633"
"""Last, bid, ask, availability, delta, gamma, theta, vega, implied volatility % (strike)."""

FUNDAMENTAL_FIELDS: Final = "55,6509,7282,7286,7287,7288,7289,7290,7291,7293,7294"
"""Symbol, availability, 90-day volume, dividend, yield %, ex-date, market cap, P/E, EPS, 52-week high/low."""

SNAPSHOT_BATCH: Final = 50
"""Conids per snapshot request."""

SCANNER_PARAMS_REUSE: Final = timedelta(minutes=15)
"""IBKR paces `/iserver/scanner/params` at one request per 15 minutes; the answer rarely changes."""

WS_TIMEOUT_S: Final = 5.0
"""How long to wait for the first frame of a websocket topic."""

_SCALED: Final = re.compile(r"^([+-]?[0-9.]+)([KMBT])$")
_SCALES: Final = {"K": Decimal(10) ** 3, "M": Decimal(10) ** 6, "B": Decimal(10) ** 9, "T": Decimal(10) ** 12}
_MONTHS: Final = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_PA_DATE: Final = re.compile(r"^\w{3} (\w{3}) (\d{1,2}) .* (\d{4})$")


def number(value: object) -> Decimal | None:
    """A CPAPI number in any of its spellings: JSON number, `"1,234.5"`, `"+2.37"`, `"3.26T"`, `"0.45%"`."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return mapping.to_decimal(value)
    text = str(value).strip().replace(",", "").removesuffix("%").strip()
    scaled = _SCALED.match(text.upper())
    if scaled:
        try:
            return Decimal(scaled.group(1)) * _SCALES[scaled.group(2)]
        except InvalidOperation:
            return None
    return mapping.to_decimal(text)


def _obj(data: object, what: str) -> dict[str, object]:
    if not isinstance(data, dict):
        raise wire.invalid_response(what)
    return cast(dict[str, object], data)


def _objs(data: object) -> list[dict[str, object]]:
    if not isinstance(data, list):
        return []
    return [cast(dict[str, object], item) for item in cast(list[object], data) if isinstance(item, dict)]


def _text(value: object) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    text = str(value).strip()
    return text or None


def _int(value: object) -> int | None:
    try:
        return int(str(value).strip()) if value is not None and not isinstance(value, bool) else None
    except ValueError:
        return None


def _right(value: object) -> str | None:
    text = (_text(value) or "").upper()
    return {"C": "call", "CALL": "call", "P": "put", "PUT": "put"}.get(text)


def _yyyymmdd(value: object) -> date | None:
    text = _text(value)
    if text is None or not re.fullmatch(r"\d{8}", text):
        return None
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return None


def _pa_date(value: object) -> date | None:
    """Portfolio Analyst dates: `"Mon Jun 10 00:00:00 EDT 2024"`, `20240610`, or milliseconds."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 10**11:
        return datetime.fromtimestamp(value / 1000, tz=UTC).date()
    text = _text(value)
    if text is None:
        return None
    found = _pa_date_match(text)
    return found if found is not None else _yyyymmdd(text)


def _pa_date_match(text: str) -> date | None:
    match = _PA_DATE.match(text)
    if match is None or match.group(1).upper() not in _MONTHS:
        return None
    try:
        return date(int(match.group(3)), _MONTHS.index(match.group(1).upper()) + 1, int(match.group(2)))
    except ValueError:
        return None


def _status(row: Mapping[str, object]) -> DataStatus:
    return mapping.data_status(_text(row.get("6509")))


class MarketReads:
    """Mixed into `CpapiBackend`; uses its client, clock and contract-info cache."""

    name: str
    _client: CpapiClient
    _selection: AccountSelection
    _clock: Callable[[], datetime]
    _preflight_delays_s: tuple[float, ...]
    _ws: WsConnector | None
    _scanner_params: tuple[datetime, ScannerParams] | None
    _searched: tuple[int, set[str]]
    _pnl_primed: int | None

    async def _contract_info(self, contract_id: int) -> wire.WireContractInfo | None:
        raise NotImplementedError

    async def session_status(self) -> BrokerSessionStatus:
        raise NotImplementedError

    async def _account_get(self, account_id: str, path: str) -> object:
        raise NotImplementedError

    async def live_orders(self, account_id: str) -> list[OrderRecord]:
        raise NotImplementedError

    # -- session ---------------------------------------------------------------------------------

    async def renew_session(self) -> BrokerSessionStatus:
        """`POST /iserver/auth/ssodh/init` with `compete`, then the fresh auth status."""
        await self._client.post("/iserver/auth/ssodh/init", {"publish": True, "compete": True})
        status = await self.session_status()
        if status.status == "usable":
            await self._client.prime()
        return status

    async def _session_id(self) -> str:
        tickle = _obj(await self._client.post("/tickle"), "tickle")
        session = _text(tickle.get("session"))
        if session is None:
            raise GatewayError(ErrorCode.BROKER_SESSION_REQUIRED, "The broker gave no session for its websocket.")
        return session

    def _connector(self) -> WsConnector:
        if self._ws is None:
            raise GatewayError(ErrorCode.BACKEND_UNSUPPORTED, "This backend has no websocket connection to the broker.")
        return self._ws

    # -- accounts and P&L ------------------------------------------------------------------------

    async def account_metadata(self, account_id: str) -> AccountMetadata:
        """`/portfolio/{id}/meta` and the session's `/iserver/accounts` properties."""
        from ibkr_gateway_core.market.models import AccountMetadata

        meta = _obj(await self._account_get(account_id, f"/portfolio/{account_id}/meta"), "account meta")
        iserver = _obj(await self._client.get("/iserver/accounts"), "accounts")
        is_paper = iserver.get("isPaper")
        props = iserver.get("acctProps")
        account_props = cast(dict[str, object], props).get(account_id) if isinstance(props, dict) else None
        fractions = (
            cast(dict[str, object], account_props).get("supportsFractions") if isinstance(account_props, dict) else None
        )
        features = iserver.get("allowFeatures")
        types = (
            _text(cast(dict[str, object], features).get("allowedAssetTypes")) if isinstance(features, dict) else None
        )
        currency = _text(meta.get("currency"))
        faclient = meta.get("faclient")
        return AccountMetadata(
            account_id=account_id,
            account_mode=mapping.account_mode(is_paper if isinstance(is_paper, bool) else None, account_id),
            title=_text(meta.get("accountTitle")) or _text(meta.get("displayName")),
            account_type=_text(meta.get("type")),
            base_currency=currency if currency and re.fullmatch(r"[A-Z]{3}", currency) else None,
            trading_type=_text(meta.get("tradingType")),
            business_type=_text(meta.get("businessType")),
            ib_entity=_text(meta.get("ibEntity")),
            customer_type=_text(meta.get("customerType")),
            advisor_client=faclient if isinstance(faclient, bool) else None,
            supports_fractions=fractions if isinstance(fractions, bool) else None,
            allowed_asset_types=[part for part in (types or "").split(",") if part],
        )

    async def _pnl_row(self, account_id: str) -> dict[str, object] | None:
        """This account's row of `/iserver/account/pnl/partitioned`.

        CPAPI answers `{"upnl": {}}` until its P&L stream (`spl`) has run once in the brokerage session;
        then the websocket starts it once per session, and its first frame (same keys) answers this call.
        """
        row = _partition(await self._client.get("/iserver/account/pnl/partitioned"), account_id)
        if row is not None or self._ws is None:
            return row
        if self._pnl_primed == self._client.brokerage_generation:
            return None
        frame = await first_frame(
            self._connector(),
            await self._session_id(),
            subscribe="spl+{}",
            unsubscribe="upl{}",
            topic="spl",
            timeout_s=WS_TIMEOUT_S,
        )
        self._pnl_primed = self._client.brokerage_generation
        return _partition({"upnl": frame.get("args")}, account_id)  # the stream's frame has the same keys

    async def daily_pnl(self, account_id: str) -> DailyPnl:
        """Daily and unrealised P&L, net liquidation and market value of one account."""
        from ibkr_gateway_core.market.models import DailyPnl

        row = await self._pnl_row(account_id)
        return DailyPnl(
            account_id=account_id,
            available=row is not None,
            daily_pnl=number((row or {}).get("dpl")),
            unrealized_pnl=number((row or {}).get("upl")),
            net_liquidation=number((row or {}).get("nl")),
            market_value=number((row or {}).get("mv")),
            excess_liquidity=number((row or {}).get("el")),
            received_at=self._clock(),
        )

    async def pnl_breakdown(self, account_id: str) -> PnlBreakdown:
        """Partitioned P&L plus the ledger's realised and unrealised P&L per currency."""
        from ibkr_gateway_core.market.models import CurrencyPnl, PnlBreakdown

        row = await self._pnl_row(account_id)
        ledger = _obj(await self._account_get(account_id, f"/portfolio/{account_id}/ledger"), "ledger")
        currencies: list[CurrencyPnl] = []
        for key, value in sorted(ledger.items(), key=lambda item: (item[0] != "BASE", item[0])):
            if not isinstance(value, dict):
                continue
            entry = cast(dict[str, object], value)
            currencies.append(
                CurrencyPnl(
                    currency=key,
                    realized_pnl=number(entry.get("realizedpnl")),
                    unrealized_pnl=number(entry.get("unrealizedpnl")),
                )
            )
        base = next((c for c in currencies if c.currency == "BASE"), None)
        warnings = [] if row is not None else ["The broker has no partitioned P&L for this account yet."]
        return PnlBreakdown(
            account_id=account_id,
            daily_pnl=number((row or {}).get("dpl")),
            unrealized_pnl=number((row or {}).get("upl")) or (base.unrealized_pnl if base else None),
            realized_pnl=base.realized_pnl if base else None,
            currencies=currencies,
            received_at=self._clock(),
            warnings=warnings,
        )

    # -- options ---------------------------------------------------------------------------------

    async def _search(self, symbol: str) -> list[dict[str, object]]:
        try:
            data = await self._client.get("/iserver/secdef/search", {"symbol": symbol})
        except BrokerHttpError as exc:
            if exc.status_code in (400, 404):
                return []
            raise
        generation = self._client.brokerage_generation
        if self._searched[0] != generation:
            self._searched = (generation, set())
        self._searched[1].add(symbol.upper())
        return _objs(data)

    async def _searched_for(self, contract_id: int) -> None:
        """CPAPI wants a secdef search of the underlying before strikes and info, once per session."""
        info = await self._contract_info(contract_id)
        if info is None or not info.symbol:
            raise GatewayError(ErrorCode.INPUT_UNKNOWN_CONTRACT, f"The broker knows no contract {contract_id}.")
        if self._searched[0] != self._client.brokerage_generation or info.symbol.upper() not in self._searched[1]:
            await self._search(info.symbol)

    async def option_expirations(self, symbol: str, contract_id: int | None) -> OptionExpirations:
        """Months and exchanges of the `OPT` section of the underlying's secdef search result."""
        from ibkr_gateway_core.market.models import OptionExpirations

        results = await self._search(symbol)
        with_options: list[tuple[int, str, dict[str, object]]] = []
        for result in results:
            conid = _int(result.get("conid"))
            sections = _objs(result.get("sections"))
            section = next((s for s in sections if _text(s.get("secType")) == "OPT"), None)
            if conid is not None and section is not None and (contract_id is None or conid == contract_id):
                with_options.append((conid, _text(result.get("symbol")) or symbol, section))
        if not with_options:
            raise GatewayError(
                ErrorCode.INPUT_UNKNOWN_CONTRACT,
                f"The broker lists no options for {symbol}" + (f" with conid {contract_id}." if contract_id else "."),
            )
        if len(with_options) > 1:
            raise GatewayError(
                ErrorCode.INPUT_AMBIGUOUS_CONTRACT,
                f"{symbol} has options on {len(with_options)} contracts; pass contract_id (one of "
                + ", ".join(str(conid) for conid, _, _ in with_options[:10])
                + ").",
                details={"candidates": [conid for conid, _, _ in with_options[:10]]},
            )
        conid, found_symbol, section = with_options[0]
        months = [m.strip().upper() for m in (_text(section.get("months")) or "").split(";") if m.strip()]
        exchanges = [e.strip() for e in (_text(section.get("exchange")) or "").split(";") if e.strip()]
        return OptionExpirations(underlying_contract_id=conid, symbol=found_symbol, months=months, exchanges=exchanges)

    async def option_strikes(self, contract_id: int, month: str) -> OptionStrikes:
        """`/iserver/secdef/strikes` for one month (after the secdef search CPAPI requires)."""
        from ibkr_gateway_core.market.models import OptionStrikes

        await self._searched_for(contract_id)
        params = {"conid": str(contract_id), "sectype": "OPT", "month": month}
        try:
            data = await self._client.get("/iserver/secdef/strikes", params)
        except BrokerHttpError as exc:
            if exc.status_code in (400, 404, 500):
                raise GatewayError(
                    ErrorCode.INPUT_INVALID_ARGUMENT,
                    f"The broker has no option strikes for conid {contract_id} in {month}.",
                ) from None
            raise
        body = _obj(data, "option strikes")
        if wire.error_text(body) is not None:
            raise GatewayError(
                ErrorCode.INPUT_INVALID_ARGUMENT,
                f"The broker has no option strikes for conid {contract_id} in {month}.",
            )
        return OptionStrikes(
            underlying_contract_id=contract_id,
            month=month,
            calls=_strikes(body.get("call")),
            puts=_strikes(body.get("put")),
        )

    async def _option_contracts(
        self, contract_id: int, month: str, strike: Decimal, right: str
    ) -> list[dict[str, object]]:
        params = {
            "conid": str(contract_id),
            "sectype": "OPT",
            "month": month,
            "strike": f"{strike:f}",
            "right": "C" if right == "call" else "P",
        }
        try:
            data = await self._client.get("/iserver/secdef/info", params)
        except BrokerHttpError as exc:
            if exc.status_code in (400, 404, 500):
                return []
            raise
        return _objs(data)

    async def option_chain(self, request: OptionChainInput) -> OptionChain:
        """Expirations → strikes → contracts (`/iserver/secdef/info`) → one snapshot of all of them."""
        from ibkr_gateway_core.market.models import OptionChain, OptionQuote

        expirations = await self.option_expirations(request.symbol, request.contract_id)
        conid = expirations.underlying_contract_id
        if not expirations.months:
            raise GatewayError(
                ErrorCode.INPUT_UNKNOWN_CONTRACT, f"The broker lists no option months for {request.symbol}."
            )
        month = request.month or expirations.months[0]
        if month not in expirations.months:
            raise GatewayError(
                ErrorCode.INPUT_INVALID_ARGUMENT,
                f"{request.symbol} has no options in {month}; months: {', '.join(expirations.months)}.",
            )
        strikes = await self.option_strikes(conid, month)
        warnings: list[str] = []
        underlying = await self._underlying_price(conid)
        every = sorted(set(strikes.calls) | set(strikes.puts))
        if underlying is None:
            warnings.append("No price for the underlying: the middle strikes are shown instead of those at the money.")
            middle = len(every) // 2
            start = max(0, middle - request.strike_count // 2)
            chosen = every[start : start + request.strike_count]
        else:
            chosen = sorted(sorted(every, key=lambda k: (abs(k - underlying), k))[: request.strike_count])
        rights = ["call", "put"] if request.right == "both" else [request.right]
        contracts: list[tuple[str, Decimal, dict[str, object]]] = []
        for strike in chosen:
            for right in rights:
                listed = strikes.calls if right == "call" else strikes.puts
                if strike in listed:
                    found = await self._option_contracts(conid, month, strike, right)
                    contracts.extend((right, strike, item) for item in found)
        expiries = sorted({d for _, _, c in contracts if (d := _yyyymmdd(c.get("maturityDate"))) is not None})
        if request.expiry is not None:
            wanted = _yyyymmdd(request.expiry)
            contracts = [item for item in contracts if _yyyymmdd(item[2].get("maturityDate")) == wanted]
            if not contracts:
                raise GatewayError(
                    ErrorCode.INPUT_INVALID_ARGUMENT,
                    f"No {request.symbol} option expires on {request.expiry} in {month}; expiries: "
                    + (", ".join(d.isoformat() for d in expiries) or "none")
                    + ".",
                )
        conids = [c for _, _, item in contracts if (c := _int(item.get("conid"))) is not None]
        rows = await self._snapshot(conids, OPTION_FIELDS, ("31", "84", "86", "7308"))
        options: list[OptionQuote] = []
        for right, strike, item in contracts:
            option_id = _int(item.get("conid"))
            if option_id is None:
                continue
            row = rows.get(option_id, {})
            options.append(
                OptionQuote(
                    contract_id=option_id,
                    right="call" if right == "call" else "put",
                    strike=number(item.get("strike")) or strike,
                    expiry=_yyyymmdd(item.get("maturityDate")),
                    multiplier=number(item.get("multiplier")),
                    bid=number(row.get("84")),
                    ask=number(row.get("86")),
                    last=mapping.parse_last(cast(Any, row.get("31")))[0],
                    delta=number(row.get("7308")),
                    gamma=number(row.get("7309")),
                    theta=number(row.get("7310")),
                    vega=number(row.get("7311")),
                    implied_volatility_percent=number(row.get("7633")),
                    data_status=_status(row),
                )
            )
        if options and all(o.data_status == "unavailable" for o in options):
            warnings.append("The broker sent no market data for these options (subscription or pre-flight).")
        options.sort(key=lambda o: (o.expiry or date.max, o.strike, o.right))
        return OptionChain(
            underlying_contract_id=conid,
            symbol=expirations.symbol,
            month=month,
            underlying_price=underlying,
            expiries=expiries,
            options=options,
            warnings=warnings,
            received_at=self._clock(),
        )

    async def _underlying_price(self, contract_id: int) -> Decimal | None:
        rows = await self._snapshot([contract_id], "31,84,86,6509", ("31", "84", "86"))
        row = rows.get(contract_id, {})
        last = mapping.parse_last(cast(Any, row.get("31")))[0]
        if last is not None:
            return last
        bid, ask = number(row.get("84")), number(row.get("86"))
        return (bid + ask) / 2 if bid is not None and ask is not None else None

    async def option_greeks(self, contract_id: int) -> OptionGreeks:
        """Contract details (must be an option) and one snapshot of the option fields."""
        from ibkr_gateway_core.market.models import OptionGreeks

        try:
            data = await self._client.get(f"/iserver/contract/{contract_id}/info")
        except BrokerHttpError as exc:
            if exc.status_code in (400, 404):
                raise GatewayError(
                    ErrorCode.INPUT_UNKNOWN_CONTRACT, f"The broker knows no contract {contract_id}."
                ) from None
            raise
        raw = _obj(data, "contract info")
        kind = (_text(raw.get("instrument_type")) or "").upper()
        if kind not in ("OPT", "FOP"):
            raise GatewayError(
                ErrorCode.INPUT_INVALID_CONTRACT,
                f"Contract {contract_id} is not an option ({kind or 'unknown type'}); "
                "find option conids with ibkr_options_chain.",
            )
        rows = await self._snapshot([contract_id], OPTION_FIELDS, ("7308", "7633", "31"))
        row = rows.get(contract_id, {})
        warnings = [] if row.get("7308") is not None else ["The broker sent no greeks for this option yet."]
        right = _right(raw.get("right"))
        return OptionGreeks(
            contract_id=contract_id,
            symbol=_text(raw.get("symbol")),
            right="call" if right == "call" else "put" if right == "put" else None,
            strike=number(raw.get("strike")),
            expiry=_yyyymmdd(raw.get("maturity_date")),
            last=mapping.parse_last(cast(Any, row.get("31")))[0],
            delta=number(row.get("7308")),
            gamma=number(row.get("7309")),
            theta=number(row.get("7310")),
            vega=number(row.get("7311")),
            implied_volatility_percent=number(row.get("7633")),
            data_status=_status(row),
            received_at=self._clock(),
            warnings=warnings,
        )

    async def _snapshot(
        self, conids: Sequence[int], fields: str, wanted: Sequence[str]
    ) -> dict[int, dict[str, object]]:
        """Snapshot rows by conid, re-polled (bounded) while CPAPI answers only the pre-flight."""
        rows: dict[int, dict[str, object]] = {}
        pending: list[int] = list(dict.fromkeys(conids))
        for delay in (0.0, *self._preflight_delays_s):
            if not pending:
                break
            if delay:
                await anyio.sleep(delay)
            for start in range(0, len(pending), SNAPSHOT_BATCH):
                batch = pending[start : start + SNAPSHOT_BATCH]
                params = {"conids": ",".join(str(c) for c in batch), "fields": fields}
                for row in _objs(await self._client.get("/iserver/marketdata/snapshot", params)):
                    conid = _int(row.get("conid"))
                    if conid is not None:
                        rows[conid] = row
            pending = [c for c in pending if not any(rows.get(c, {}).get(code) is not None for code in wanted)]
        return rows

    # -- scanner ---------------------------------------------------------------------------------

    async def scanner_params(self) -> ScannerParams:
        """`/iserver/scanner/params`, reused for 15 minutes (IBKR's pace for it)."""
        from ibkr_gateway_core.market.models import (
            ScannerFilter,
            ScannerInstrument,
            ScannerParams,
            ScanType,
        )

        cached = self._scanner_params
        now = self._clock()
        if cached is not None and now - cached[0] < SCANNER_PARAMS_REUSE:
            return cached[1]
        body = _obj(await self._client.get("/iserver/scanner/params"), "scanner params")
        scan_types = [
            ScanType(
                code=code, name=_text(item.get("display_name")) or code, instruments=_texts(item.get("instruments"))
            )
            for item in _objs(body.get("scan_type_list"))
            if (code := _text(item.get("code"))) is not None
        ]
        instruments = [
            ScannerInstrument(code=code, name=_text(item.get("display_name")) or code)
            for item in _objs(body.get("instrument_list"))
            if (code := _text(item.get("type"))) is not None
        ]
        locations: list[ScannerLocation] = []
        _walk_locations(_objs(body.get("location_tree")), locations)
        filters = [
            ScannerFilter(code=code, name=_text(item.get("display_name")) or code, kind=_text(item.get("type")))
            for item in _objs(body.get("filter_list"))
            if (code := _text(item.get("code"))) is not None
        ]
        params = ScannerParams(scan_types=scan_types, instruments=instruments, locations=locations, filters=filters)
        self._scanner_params = (now, params)
        return params

    async def scanner_run(self, request: ScannerRunInput) -> ScannerResult:
        """`POST /iserver/scanner/run`; a refused scan code is the caller's input error."""
        from ibkr_gateway_core.market.models import ScannerResult, ScannerRow

        body: dict[str, object] = {
            "instrument": request.instrument,
            "type": request.scan_code,
            "location": request.location,
            "filter": [],
        }
        try:
            data = await self._client.post("/iserver/scanner/run", body)
        except BrokerHttpError as exc:
            if exc.status_code in (400, 404):
                raise GatewayError(
                    ErrorCode.INPUT_INVALID_ARGUMENT,
                    f"The broker refused the scan {request.scan_code} on {request.instrument} in {request.location}; "
                    "see ibkr_scanner_params for valid codes.",
                ) from None
            raise
        answer = _obj(data, "scanner run") if data not in (None, "", []) else {}
        rows: list[ScannerRow] = []
        for index, item in enumerate(_objs(answer.get("contracts"))):
            conid = _int(item.get("con_id")) or _int(str(item.get("conidex") or "").split("@")[0])
            if conid is None:
                continue
            rows.append(
                ScannerRow(
                    rank=index + 1,
                    contract_id=conid,
                    symbol=_text(item.get("symbol")),
                    company_name=_text(item.get("company_name")),
                    asset_class=mapping.asset_class(_text(item.get("sec_type"))),
                    exchange=_text(item.get("listing_exchange")),
                    scan_value=_text(item.get("scan_data")),
                )
            )
        return ScannerResult(
            scan_code=request.scan_code,
            instrument=request.instrument,
            location=request.location,
            column_name=_text(answer.get("scan_data_column_name")),
            rows=rows,
        )

    # -- calendar and FX -------------------------------------------------------------------------

    async def market_schedule(self, symbol: str, exchange: str | None) -> MarketSchedule:
        """`/trsrv/secdef/schedule` for a stock symbol; sessions are read in the exchange's time zone."""
        from ibkr_gateway_core.market.models import MarketSchedule, TradingDay

        params = {"assetClass": "STK", "symbol": symbol}
        if exchange is not None:
            params["exchange"] = exchange
        try:
            data = await self._client.get("/trsrv/secdef/schedule", params)
        except BrokerHttpError as exc:
            if exc.status_code in (400, 404, 500):
                raise GatewayError(
                    ErrorCode.INPUT_UNKNOWN_CONTRACT, f"The broker has no schedule for {symbol}."
                ) from None
            raise
        venues = _objs(data)
        venue = next((v for v in venues if exchange is None or _text(v.get("exchange")) == exchange), None)
        if venue is None:
            raise GatewayError(
                ErrorCode.INPUT_UNKNOWN_CONTRACT,
                f"The broker has no schedule for {symbol}" + (f" on {exchange}." if exchange else "."),
            )
        zone_name = _text(venue.get("timezone"))
        try:
            zone = ZoneInfo(zone_name) if zone_name else UTC
        except (ZoneInfoNotFoundError, ValueError):
            zone = UTC
        days: list[TradingDay] = []
        for entry in _objs(venue.get("schedules")):
            day = _yyyymmdd(entry.get("tradingScheduleDate"))
            if day is None or day.year < 2001:  # CPAPI's weekday templates carry dates in 2000
                continue
            sessions = [
                *_sessions(day, zone, entry.get("sessions"), "regular"),
                *_sessions(day, zone, entry.get("tradingtimes"), "extended"),
            ]
            sessions.sort(key=lambda s: (s.opens_at, s.kind))
            days.append(TradingDay(date=day, open=bool(sessions), sessions=sessions))
        days.sort(key=lambda d: d.date)
        now = self._clock()
        every = [s for d in days for s in d.sessions]
        current = next((s for s in every if s.kind == "regular" and s.opens_at <= now < s.closes_at), None)
        current = current or next((s for s in every if s.opens_at <= now < s.closes_at), None)
        upcoming = sorted((s for s in every if s.opens_at > now and s.kind == "regular"), key=lambda s: s.opens_at)
        covered = bool(days) and days[0].date <= now.astimezone(zone).date() <= days[-1].date
        return MarketSchedule(
            symbol=symbol,
            exchange=_text(venue.get("exchange")) or (exchange or ""),
            time_zone=zone_name,
            is_open_now=(current is not None) if covered else None,
            current_session=current,
            next_session=upcoming[0] if upcoming else None,
            days=days,
            checked_at=now,
        )

    async def currency_rate(self, base: str, quote: str) -> CurrencyRate:
        """`/iserver/exchangerate`; an empty or zero rate is `MARKET_DATA_UNAVAILABLE`."""
        from ibkr_gateway_core.market.models import CurrencyRate

        try:
            data = await self._client.get("/iserver/exchangerate", {"source": base, "target": quote})
        except BrokerHttpError as exc:
            if exc.status_code in (400, 404):
                raise GatewayError(
                    ErrorCode.MARKET_DATA_UNAVAILABLE, f"The broker has no rate for {base}/{quote}."
                ) from None
            raise
        rate = number(data.get("rate")) if isinstance(data, dict) else None  # pyright: ignore[reportUnknownMemberType, reportUnknownArgumentType]
        if rate is None or rate <= 0:
            raise GatewayError(ErrorCode.MARKET_DATA_UNAVAILABLE, f"The broker has no rate for {base}/{quote}.")
        return CurrencyRate(base=base, quote=quote, rate=rate, received_at=self._clock())

    # -- history ---------------------------------------------------------------------------------

    async def order_history(self, account_id: str, filters: list[str]) -> list[OrderRecord]:
        """`/iserver/account/orders` with status `filters`, after the live-orders warm-up."""
        await self.live_orders(account_id)  # warms the session's order subscription as CPAPI needs
        if not filters:
            return await self.live_orders(account_id)
        async with self._selection.holding(account_id):
            data = await self._client.get(
                "/iserver/account/orders", {"accountId": account_id, "filters": ",".join(filters)}
            )
        orders = wire.parse(wire.WireLiveOrders, data, "orders")
        rows = [row for row in orders.orders if row.account_id in (None, account_id)]
        from . import _order_mapping as order_mapping  # with the first order read: account reads never need it

        try:
            return [order_mapping.to_order_record(row, account_id) for row in rows]
        except ValueError:
            raise wire.invalid_response("orders") from None

    async def transactions(self, account_id: str, contract_id: int, currency: str, days: int) -> TransactionHistory:
        """`POST /pa/transactions` for one account and one contract."""
        from ibkr_gateway_core.market.models import Transaction, TransactionHistory

        body: dict[str, object] = {"acctIds": [account_id], "conids": [contract_id], "currency": currency, "days": days}
        try:
            data = await self._client.post("/pa/transactions", body)
        except BrokerHttpError as exc:
            if exc.status_code in (400, 404):
                raise GatewayError(
                    ErrorCode.INPUT_INVALID_ARGUMENT,
                    f"The broker has no transactions for conid {contract_id} in this account.",
                ) from None
            raise
        answer = _obj(data, "transactions") if data not in (None, "") else {}
        rows: list[Transaction] = []
        for item in _objs(answer.get("transactions")):
            when = _pa_date(item.get("date"))
            if when is None:
                continue
            rows.append(
                Transaction(
                    date=when,
                    kind=_text(item.get("type")) or "unknown",
                    description=_text(item.get("desc")),
                    contract_id=_int(item.get("conid")),
                    quantity=number(item.get("qty")),
                    price=number(item.get("pr")),
                    amount=number(item.get("amt")),
                    currency=_text(item.get("cur")),
                    fx_rate=number(item.get("fxRate")),
                )
            )
        rows.sort(key=lambda t: t.date, reverse=True)
        return TransactionHistory(
            account_id=account_id, contract_id=contract_id, currency=currency, days=days, transactions=rows
        )

    # -- depth and fundamentals ------------------------------------------------------------------

    async def market_depth(self, account_id: str, contract_id: int, exchange: str | None) -> MarketDepth:
        """The first frame of the websocket topic `sbd+{acct}+{conid}[+{exchange}]`."""
        from ibkr_gateway_core.market.models import DepthLevel, MarketDepth

        info = await self._contract_info(contract_id)
        if info is None:
            raise GatewayError(ErrorCode.INPUT_UNKNOWN_CONTRACT, f"The broker knows no contract {contract_id}.")
        topic = f"sbd+{account_id}+{contract_id}" + (f"+{exchange}" if exchange else "")
        frame = await first_frame(
            self._connector(),
            await self._session_id(),
            subscribe=topic,
            unsubscribe=f"ubd+{account_id}",
            topic=topic,
            timeout_s=WS_TIMEOUT_S,
        )
        error = _text(frame.get("error"))
        if error is not None:
            raise GatewayError(
                ErrorCode.BROKER_CAPABILITY_UNAVAILABLE,
                f"The broker sent no order book for {contract_id}: {error[:200]}",
            )
        bids: list[DepthLevel] = []
        asks: list[DepthLevel] = []
        for row in _objs(frame.get("data")):
            price = number(str(row.get("price") or "").split("@")[0] or None)
            if price is None:
                continue
            bid, ask = number(row.get("bid")), number(row.get("ask"))
            if bid is not None:
                bids.append(DepthLevel(price=price, size=bid))
            if ask is not None:
                asks.append(DepthLevel(price=price, size=ask))
        bids.sort(key=lambda level: level.price, reverse=True)
        asks.sort(key=lambda level: level.price)
        return MarketDepth(contract_id=contract_id, exchange=exchange, bids=bids, asks=asks, received_at=self._clock())

    async def fundamentals(self, contract_id: int) -> Fundamentals:
        """Company figures from snapshot fields 7282–7294 and the contract's industry and category."""
        from ibkr_gateway_core.market.models import Fundamentals

        info = await self._contract_info(contract_id)
        if info is None:
            raise GatewayError(ErrorCode.INPUT_UNKNOWN_CONTRACT, f"The broker knows no contract {contract_id}.")
        rows = await self._snapshot([contract_id], FUNDAMENTAL_FIELDS, ("7289", "7290", "7291", "7293"))
        row = rows.get(contract_id, {})
        return Fundamentals(
            contract_id=contract_id,
            symbol=info.symbol,
            company_name=info.company_name,
            industry=info.industry,
            category=info.category,
            market_cap=number(row.get("7289")),
            pe_ratio=number(row.get("7290")),
            eps=number(row.get("7291")),
            dividend_amount=number(row.get("7286")),
            dividend_yield_percent=number(row.get("7287")),
            ex_dividend_date=_text(row.get("7288")),
            week52_high=number(row.get("7293")),
            week52_low=number(row.get("7294")),
            average_volume_90d=number(row.get("7282")),
            received_at=self._clock(),
        )


def _partition(data: object, account_id: str) -> dict[str, object] | None:
    if not isinstance(data, dict):
        return None
    upnl = cast(dict[str, object], data).get("upnl")
    if not isinstance(upnl, dict):
        return None
    for key, value in cast(dict[str, object], upnl).items():
        if (key == account_id or key.startswith(account_id + ".")) and isinstance(value, dict):
            return cast(dict[str, object], value)
    return None


def _strikes(value: object) -> list[Decimal]:
    if not isinstance(value, list):
        return []
    found = {n for item in cast(list[object], value) if (n := number(item)) is not None and n > 0}
    return sorted(found)


def _texts(value: object) -> list[str]:
    if not isinstance(value, list):
        return []
    return [t for item in cast(list[object], value) if (t := _text(item)) is not None]


def _walk_locations(nodes: list[dict[str, object]], out: list[ScannerLocation], depth: int = 0) -> None:
    from ibkr_gateway_core.market.models import ScannerLocation

    for node in nodes:
        code = _text(node.get("type"))
        if code is not None and depth > 0:
            out.append(ScannerLocation(code=code, name=_text(node.get("display_name")) or code))
        if depth < 4:
            _walk_locations(_objs(node.get("locations")), out, depth + 1)


def _hhmm(value: object) -> time | None:
    text = _text(value)
    if text is None or not re.fullmatch(r"\d{4}", text):
        return None
    hour, minute = int(text[:2]), int(text[2:])
    if hour == 24 and minute == 0:
        return time(23, 59)
    return time(hour, minute) if hour < 24 and minute < 60 else None


def _sessions(day: date, zone: Any, value: object, kind: str) -> list[TradingSession]:
    from ibkr_gateway_core.market.models import TradingSession

    found: list[TradingSession] = []
    for item in _objs(value):
        opens, closes = _hhmm(item.get("openingTime")), _hhmm(item.get("closingTime"))
        if opens is None or closes is None:
            continue
        start = datetime.combine(day, opens, tzinfo=zone)
        end = datetime.combine(day, closes, tzinfo=zone)
        if end <= start:
            end += timedelta(days=1)  # a session that closes after midnight
        found.append(TradingSession(kind="regular" if kind == "regular" else "extended", opens_at=start, closes_at=end))
    return found
