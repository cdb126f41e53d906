"""The simulator's trading-desk data: options, scanner, schedules, FX, P&L, PA transactions, depth.

Everything is a deterministic function of the seed book and the simulator clock (no randomness), in
CPAPI's real shapes: formatted number strings, keys left out when there is no value (a deep
out-of-the-money option has no bid and no trade; an ETF has no P/E), and empty answers (P&L before
its stream ran, a scan of a market without matches, a contract without transactions).

Option conids encode their contract (`9·10¹¹ + underlying·10⁷ + month·10⁶ + expiry·10⁵ + strike·10
+ right`), so any process can answer for a conid another process listed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Final
from zoneinfo import ZoneInfo

from ._book import SimContract
from ._json import as_array
from ._session import SimHttpError, error_body

if TYPE_CHECKING:
    from .state import SimulatorState

OPTION_BASE: Final = 9 * 10**11
STRIKES_EACH_SIDE: Final = 10
RATE: Final = 0.045
_MONTHS: Final = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_US_ZONE: Final = "America/New_York"
_EU_ZONE: Final = "Europe/Berlin"
_EU_EXCHANGES: Final = frozenset({"IBIS", "FWB", "SWB"})


@dataclass(frozen=True, slots=True)
class SimOption:
    """One listed option of the simulator."""

    conid: int
    underlying: SimContract
    month: str
    expiry: date
    strike: Decimal
    right: str
    """`C` or `P`."""


def month_code(day: date) -> str:
    """`AUG24` for a day in August 2024."""
    return f"{_MONTHS[day.month - 1]}{day.year % 100:02d}"


def third_friday(year: int, month: int) -> date:
    first = date(year, month, 1)
    return first + timedelta(days=(4 - first.weekday()) % 7 + 14)


def _fmt(value: float, places: int = 2) -> str:
    return f"{value:,.{places}f}"


def _norm_cdf(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def _norm_pdf(x: float) -> float:
    return math.exp(-x * x / 2) / math.sqrt(2 * math.pi)


class TradingDesk:
    """The trading-desk endpoints of one simulator."""

    def __init__(self, state: SimulatorState) -> None:
        self._state = state
        self._pnl_streamed: object | None = None
        """The brokerage session in which the `spl` stream ran (CPAPI's partitioned P&L is empty before)."""

    # -- option universe -------------------------------------------------------------------------

    def _today(self) -> date:
        return self._state.now().date()

    def _stocks(self) -> list[SimContract]:
        return sorted((c for c in self._state.book.contracts.values() if c.sec_type == "STK"), key=lambda c: c.conid)

    def expiries(self) -> list[tuple[str, list[date]]]:
        """(month code, expiries) of the next three option months; the first also lists a weekly."""
        today = self._today()
        year, month = today.year, today.month
        if third_friday(year, month) <= today:
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        found: list[tuple[str, list[date]]] = []
        for _ in range(3):
            monthly = third_friday(year, month)
            days = [monthly]
            weekly = monthly - timedelta(days=7)
            if not found and weekly > today:
                days.insert(0, weekly)
            found.append((month_code(monthly), days))
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        return found

    @staticmethod
    def _price(contract: SimContract) -> Decimal:
        return contract.last or contract.prior_close or Decimal(100)

    @staticmethod
    def _step(price: Decimal) -> Decimal:
        if price < 50:
            return Decimal(1)
        if price < 200:
            return Decimal("2.5")
        if price < 1000:
            return Decimal(5)
        return Decimal(50) if price < 10_000 else Decimal(5000)

    def strikes(self, contract: SimContract) -> list[Decimal]:
        price = self._price(contract)
        step = self._step(price)
        center = (price / step).to_integral_value() * step
        found = [center + step * k for k in range(-STRIKES_EACH_SIDE, STRIKES_EACH_SIDE + 1)]
        return [k.normalize() if k != k.to_integral_value() else k.quantize(Decimal(1)) for k in found if k > 0]

    def option(self, conid: int) -> SimOption | None:
        """The option a conid stands for, if it is one of ours."""
        if not OPTION_BASE <= conid < OPTION_BASE + 10**9:
            return None
        code = conid - OPTION_BASE
        u_index, rest = divmod(code, 10**7)
        month_index, rest = divmod(rest, 10**6)
        expiry_index, rest = divmod(rest, 10**5)
        strike_index, right = divmod(rest, 10)
        stocks = self._stocks()
        months = self.expiries()
        if u_index >= len(stocks) or month_index >= len(months) or right > 1:
            return None
        month, days = months[month_index]
        strikes = self.strikes(stocks[u_index])
        if expiry_index >= len(days) or strike_index >= len(strikes):
            return None
        return SimOption(
            conid=conid,
            underlying=stocks[u_index],
            month=month,
            expiry=days[expiry_index],
            strike=strikes[strike_index],
            right="CP"[right],
        )

    def _conid(
        self, underlying: SimContract, month_index: int, expiry_index: int, strike_index: int, right: str
    ) -> int:
        u_index = [c.conid for c in self._stocks()].index(underlying.conid)
        return (
            OPTION_BASE
            + u_index * 10**7
            + month_index * 10**6
            + expiry_index * 10**5
            + strike_index * 10
            + (0 if right == "C" else 1)
        )

    def option_months(self) -> str:
        """The `months` of the `OPT` section of a secdef search result."""
        return ";".join(month for month, _ in self.expiries())

    def secdef_strikes(self, conid: int, sectype: str, month: str) -> dict[str, object]:
        """`/iserver/secdef/strikes`."""
        contract = self._state.book.contracts.get(conid)
        months = [m for m, _ in self.expiries()]
        if contract is None or contract.sec_type != "STK" or sectype != "OPT" or month not in months:
            raise SimHttpError(400, error_body(f"No strikes found for conid {conid} {sectype} {month}"))
        strikes = [float(k) for k in self.strikes(contract)]
        return {"call": strikes, "put": list(strikes)}

    def secdef_info(self, conid: int, sectype: str, month: str, strike: str, right: str) -> list[dict[str, object]]:
        """`/iserver/secdef/info` for options: every expiry of the month at that strike and right."""
        contract = self._state.book.contracts.get(conid)
        if contract is None or sectype != "OPT":
            raise SimHttpError(400, error_body("Invalid contract or security type"))
        months = self.expiries()
        index = next((i for i, (m, _) in enumerate(months) if m == month), None)
        strikes = self.strikes(contract)
        try:
            wanted = Decimal(strike)
        except ArithmeticError:
            raise SimHttpError(400, error_body(f"Invalid strike {strike!r}")) from None
        if index is None or wanted not in strikes or right not in ("C", "P"):
            return []
        strike_index = strikes.index(wanted)
        rows: list[dict[str, object]] = []
        for expiry_index, expiry in enumerate(months[index][1]):
            option_id = self._conid(contract, index, expiry_index, strike_index, right)
            rows.append(
                {
                    "conid": option_id,
                    "symbol": contract.symbol,
                    "secType": "OPT",
                    "exchange": "SMART",
                    "listingExchange": None,
                    "right": right,
                    "strike": float(wanted),
                    "currency": contract.currency,
                    "cusip": None,
                    "coupon": "No Coupon",
                    "desc1": contract.symbol,
                    "desc2": f"{expiry:%b%d'%y} {wanted} {'Call' if right == 'C' else 'Put'}",
                    "maturityDate": expiry.strftime("%Y%m%d"),
                    "multiplier": "100",
                    "tradingClass": contract.symbol,
                    "validExchanges": "SMART,AMEX,CBOE,PHLX,PSE,ISE,BOX,BATS,NASDAQOM,CBOE2,MIAX,EMERALD,PEARL",
                    "showPrips": True,
                }
            )
        return rows

    def option_info(self, option: SimOption) -> dict[str, object]:
        """`/iserver/contract/{conid}/info` of an option."""
        under = option.underlying
        local = f"{under.symbol:<6}{option.expiry:%y%m%d}{option.right}{int(option.strike * 1000):08d}"
        return {
            "con_id": option.conid,
            "symbol": under.symbol,
            "company_name": under.company_name,
            "instrument_type": "OPT",
            "exchange": "SMART",
            "currency": under.currency,
            "local_symbol": local,
            "trading_class": under.symbol,
            "valid_exchanges": "SMART,AMEX,CBOE,PHLX,ISE,BOX",
            "r_t_h": True,
            "maturity_date": option.expiry.strftime("%Y%m%d"),
            "multiplier": "100",
            "right": option.right,
            "strike": f"{option.strike}",
            "underlying_con_id": under.conid,
            "smart_available": True,
        }

    def option_fields(self, option: SimOption) -> dict[str, str]:
        """Snapshot fields of an option: Black-Scholes on the seed price, formatted as CPAPI strings."""
        spot = float(self._price(option.underlying))
        strike = float(option.strike)
        years = max((option.expiry - self._today()).days, 0.5) / 365
        u_index = [c.conid for c in self._stocks()].index(option.underlying.conid)
        vol = 0.22 + 0.15 * abs(math.log(strike / spot)) + 0.02 * (u_index % 3)
        root = vol * math.sqrt(years)
        d1 = (math.log(spot / strike) + (RATE + vol * vol / 2) * years) / root
        d2 = d1 - root
        discount = math.exp(-RATE * years)
        if option.right == "C":
            price = spot * _norm_cdf(d1) - strike * discount * _norm_cdf(d2)
            delta = _norm_cdf(d1)
            theta = -spot * _norm_pdf(d1) * vol / (2 * math.sqrt(years)) - RATE * strike * discount * _norm_cdf(d2)
        else:
            price = strike * discount * _norm_cdf(-d2) - spot * _norm_cdf(-d1)
            delta = _norm_cdf(d1) - 1
            theta = -spot * _norm_pdf(d1) * vol / (2 * math.sqrt(years)) + RATE * strike * discount * _norm_cdf(-d2)
        gamma = _norm_pdf(d1) / (spot * root)
        vega = spot * _norm_pdf(d1) * math.sqrt(years) / 100
        values = {
            "55": option.underlying.symbol,
            "6509": option.underlying.availability,
            "86": _fmt(price * 1.02 + 0.01),
            "7308": f"{delta:.3f}",
            "7309": f"{gamma:.4f}",
            "7310": f"{theta / 365:.3f}",
            "7311": f"{vega:.3f}",
            "7633": f"{vol * 100:.1f}%",
        }
        if price >= 0.05:  # a nearly worthless option has no bid and has not traded
            values["84"] = _fmt(max(price * 0.98 - 0.01, 0.01))
            values["31"] = _fmt(price)
        return values

    # -- fundamentals ----------------------------------------------------------------------------

    @staticmethod
    def stock_fields(contract: SimContract) -> dict[str, str]:
        """Fundamentals snapshot fields of a stock; an ETF has no P/E, EPS or dividend date."""
        price = float(TradingDesk._price(contract))
        shares = 1e6 * (50 + contract.conid % 9000)
        values = {
            "7289": _scaled(price * shares),
            "7293": _fmt(price * 1.18),
            "7294": _fmt(price * 0.74),
            "7282": _scaled(float(contract.volume or 0) * 1.07),
        }
        if contract.stock_type != "ETF":
            eps = price / (18 + contract.conid % 17)
            values["7290"] = f"{price / eps:.2f}"
            values["7291"] = f"{eps:.2f}"
            values["7286"] = f"{price * 0.004:.2f}"
            values["7287"] = f"{0.4 * 4 * 100 / 100:.2f}%"
            values["7288"] = "20261110"
        return values

    # -- scanner ---------------------------------------------------------------------------------

    @staticmethod
    def scanner_params() -> dict[str, object]:
        """`/iserver/scanner/params` (a small, real-shaped subset)."""
        return {
            "scan_type_list": [
                {"display_name": "Top % Gainers", "code": "TOP_PERC_GAIN", "instruments": ["STK", "ETF.EQ.US"]},
                {"display_name": "Top % Losers", "code": "TOP_PERC_LOSE", "instruments": ["STK", "ETF.EQ.US"]},
                {"display_name": "Most Active", "code": "MOST_ACTIVE", "instruments": ["STK", "ETF.EQ.US"]},
                {"display_name": "Hot Contracts by Volume", "code": "HOT_BY_VOLUME", "instruments": ["STK"]},
            ],
            "instrument_list": [
                {"display_name": "US Stocks", "type": "STK", "filters": ["priceAbove", "priceBelow"]},
                {"display_name": "US Equity ETFs", "type": "ETF.EQ.US", "filters": ["priceAbove"]},
            ],
            "filter_list": [
                {"group": "priceAbove", "display_name": "Price Above", "code": "priceAbove", "type": "non-range"},
                {"group": "priceBelow", "display_name": "Price Below", "code": "priceBelow", "type": "non-range"},
            ],
            "location_tree": [
                {
                    "display_name": "US Stocks",
                    "type": "STK",
                    "locations": [
                        {"display_name": "Listed/NASDAQ", "type": "STK.US.MAJOR", "locations": []},
                        {"display_name": "NASDAQ", "type": "STK.NASDAQ", "locations": []},
                        {"display_name": "OTC Markets", "type": "STK.US.MINOR", "locations": []},
                    ],
                },
                {
                    "display_name": "Europe",
                    "type": "STK.EU",
                    "locations": [{"display_name": "XETRA", "type": "STK.EU.IBIS", "locations": []}],
                },
            ],
        }

    def scanner_run(self, body: dict[str, object]) -> dict[str, object]:
        """`/iserver/scanner/run`: STK contracts of the location, ranked by the scan."""
        scan = str(body.get("type", ""))
        location = str(body.get("location", ""))
        instrument = str(body.get("instrument", ""))
        codes = {"TOP_PERC_GAIN", "TOP_PERC_LOSE", "MOST_ACTIVE", "HOT_BY_VOLUME"}
        locations = {"STK.US.MAJOR", "STK.NASDAQ", "STK.US.MINOR", "STK.EU.IBIS"}
        if scan not in codes or location not in locations or instrument not in ("STK", "ETF.EQ.US"):
            raise SimHttpError(400, error_body("Invalid scanner parameters"))

        def listed(c: SimContract) -> bool:
            if location == "STK.EU.IBIS":
                return c.listing_exchange == "IBIS"
            if location == "STK.NASDAQ":
                return c.listing_exchange == "NASDAQ"
            if location == "STK.US.MINOR":
                return False  # no OTC contracts in the seed: an empty answer
            return c.currency == "USD"

        wanted_etf = instrument == "ETF.EQ.US"
        found = [
            c for c in self._stocks() if listed(c) and (c.stock_type == "ETF") == wanted_etf and c.last is not None
        ]

        def change(c: SimContract) -> float:
            prior = c.prior_close or c.last or Decimal(1)
            return float(((c.last or prior) - prior) / prior * 100)

        if scan in ("TOP_PERC_GAIN", "TOP_PERC_LOSE"):
            found.sort(key=change, reverse=scan == "TOP_PERC_GAIN")
            column = "Chg%"
            data = [f"{change(c):+.2f}%" for c in found]
        else:
            found.sort(key=lambda c: c.volume or 0, reverse=True)
            column = "Volume"
            data = [_scaled(float(c.volume or 0)) for c in found]
        contracts = [
            {
                "server_id": f"{index}",
                "column_name": column,
                "symbol": c.symbol,
                "conidex": str(c.conid),
                "con_id": c.conid,
                "available_chart_periods": "#R|1",
                "company_name": c.company_name,
                "scan_data": value,
                "contract_description_1": c.symbol,
                "listing_exchange": f"{c.listing_exchange}.NMS"
                if c.listing_exchange == "NASDAQ"
                else c.listing_exchange,
                "sec_type": "STK",
            }
            for index, (c, value) in enumerate(zip(found, data, strict=True))
        ]
        return {"contracts": contracts, "scan_data_column_name": column}

    # -- schedules and FX ------------------------------------------------------------------------

    def schedule(self, asset_class: str, symbol: str, exchange: str | None) -> list[dict[str, object]]:
        """`/trsrv/secdef/schedule`: about a month of days; closed days have no `sessions`."""
        matches = [
            c
            for c in self._stocks()
            if c.symbol == symbol.upper() and (exchange is None or c.listing_exchange == exchange.upper())
        ]
        if asset_class != "STK" or not matches:
            raise SimHttpError(400, error_body(f"No trading schedule found for {symbol}"))
        venues: list[dict[str, object]] = []
        for contract in matches:
            europe = contract.listing_exchange in _EU_EXCHANGES
            zone = _EU_ZONE if europe else _US_ZONE
            today = self._state.now().astimezone(ZoneInfo(zone)).date()
            schedules: list[dict[str, object]] = []
            for offset in range(-2, 29):
                day = today + timedelta(days=offset)
                entry: dict[str, object] = {"clearingCycleEndTime": "0000", "tradingScheduleDate": f"{day:%Y%m%d}"}
                closed = day.weekday() >= 5 or (not europe and day in us_holidays(day.year))
                if not closed:
                    close = "1730" if europe else ("1300" if day in us_early_closes(day.year) else "1600")
                    entry["sessions"] = [
                        {"openingTime": "0900" if europe else "0930", "closingTime": close, "prop": "LIQUID"}
                    ]
                    entry["tradingtimes"] = [
                        {
                            "openingTime": "0800" if europe else "0400",
                            "closingTime": "2200" if europe else "2000",
                            "cancelDayOrders": "Y",
                        }
                    ]
                schedules.append(entry)
            venues.append(
                {
                    "id": f"p{contract.conid}",
                    "tradeVenueId": f"v{contract.conid % 1000}",
                    "exchange": contract.listing_exchange,
                    "description": contract.listing_exchange,
                    "timezone": zone,
                    "schedules": schedules,
                }
            )
        return venues

    def exchange_rate(self, source: str, target: str) -> dict[str, object]:
        """`/iserver/exchangerate`: an empty object for a currency the simulator does not price."""
        rates = self._state.book.fx_rates_to_usd
        if source.upper() not in rates or target.upper() not in rates:
            return {}
        return {"rate": float(self._state.book.fx_rate(source.upper(), target.upper()))}

    # -- P&L and transactions --------------------------------------------------------------------

    def stream_pnl(self) -> dict[str, object]:
        """The first `spl` frame; from now on the partitioned P&L answers in this brokerage session."""
        self._pnl_streamed = self._state.session.brokerage
        return {"topic": "spl", "args": self._pnl_rows()}

    def partitioned_pnl(self) -> dict[str, object]:
        """`/iserver/account/pnl/partitioned`: empty until the P&L stream ran in this brokerage session."""
        if self._pnl_streamed is not self._state.session.brokerage:
            return {"upnl": {}}
        return {"upnl": self._pnl_rows()}

    def _pnl_rows(self) -> dict[str, object]:
        book = self._state.book
        rows: dict[str, object] = {}
        for account_id in self._state.profile.accounts:
            account = book.accounts.get(account_id)
            if account is None:
                continue
            upl = mv = dpl = Decimal(0)
            for position in book.positions_of(account_id):
                contract = book.contracts.get(position.conid)
                if contract is None:
                    continue
                price = contract.last or contract.prior_close or position.avg_cost
                rate = book.fx_rate(contract.currency, account.currency)
                mv += position.quantity * price * rate
                upl += (price - position.avg_cost) * position.quantity * rate
                dpl += (price - (contract.prior_close or price)) * position.quantity * rate
            cash = sum(
                (
                    Decimal(amount) * book.fx_rate(currency, account.currency)
                    for currency, amount in account.cash.items()
                ),
                Decimal(0),
            )
            nl = cash + mv
            rows[f"{account_id}.Core"] = {
                "rowType": 1,
                "dpl": round(float(dpl), 2),
                "nl": round(float(nl), 2),
                "upl": round(float(upl), 2),
                "uel": round(float(nl - mv / 4), 2),
                "el": round(float(nl - mv / 4), 2),
                "mv": round(float(mv), 2),
            }
        return rows

    def transactions(self, body: dict[str, object]) -> dict[str, object]:
        """`POST /pa/transactions`: the book's fills of one contract, in Portfolio Analyst's shape."""
        accounts = as_array(body.get("acctIds"))
        conids = as_array(body.get("conids"))
        if accounts is None or conids is None or len(conids) != 1:
            raise SimHttpError(400, error_body("acctIds and one conid are required"))
        try:
            conid = int(str(conids[0]))
            days = int(str(body.get("days", 90)))
        except ValueError:
            raise SimHttpError(400, error_body("conids must be integers")) from None
        wanted = {str(a) for a in accounts}
        wanted &= set(self._state.profile.accounts)
        currency = str(body.get("currency", "USD"))
        now = self._state.now()
        since = now - timedelta(days=days)
        contract = self._state.book.contracts.get(conid)
        rows: list[dict[str, object]] = []
        for execution in self._state.book.executions:
            if execution.conid != conid or execution.account_id not in wanted or execution.executed_at < since:
                continue
            sign = Decimal(1) if execution.side == "BUY" else Decimal(-1)
            rows.append(
                {
                    "date": execution.executed_at.astimezone(ZoneInfo(_US_ZONE)).strftime("%a %b %d 00:00:00 %Z %Y"),
                    "cur": contract.currency if contract else currency,
                    "fxRate": 1,
                    "pr": float(execution.price),
                    "qty": float(sign * execution.quantity),
                    "acctid": execution.account_id,
                    "amt": float(-sign * execution.quantity * execution.price),
                    "conid": conid,
                    "type": "Buy" if execution.side == "BUY" else "Sell",
                    "desc": contract.company_name if contract else "",
                }
            )
        stamp = int(now.timestamp() * 1000)
        return {
            "rc": 0,
            "nd": days,
            "rpnl": {"data": [], "amt": "0"},
            "id": "getTransactions",
            "currency": currency,
            "from": stamp - days * 86_400_000,
            "to": stamp,
            "includesRealTime": True,
            "transactions": rows,
        }

    # -- market depth ----------------------------------------------------------------------------

    def book_frame(self, topic: str) -> dict[str, object]:
        """The first `sbd` frame: ask rows (highest first) then bid rows, `focus` on the best bid."""
        parts = topic.split("+")
        if len(parts) not in (3, 4) or parts[1] not in self._state.profile.accounts:
            return {"topic": topic, "error": "Invalid account or contract"}
        try:
            conid = int(parts[2])
        except ValueError:
            return {"topic": topic, "error": "Invalid contract"}
        contract = self._state.book.contracts.get(conid)
        if contract is None or contract.bid is None or contract.ask is None:
            return {"topic": topic, "error": "No market depth for this contract"}
        if not contract.availability.startswith("R"):
            return {"topic": topic, "error": "Market depth requires a real-time market data subscription"}
        tick = Decimal("0.01") if contract.ask < 1000 else Decimal(1)
        rows: list[dict[str, object]] = []
        for level in range(4, -1, -1):
            size = (contract.ask_size or 1) * 100 + level * 300 + contract.conid % 7 * 100
            rows.append(
                {"row": 4 - level, "focus": 0, "price": _fmt(float(contract.ask + tick * level)), "ask": f"{size:,}"}
            )
        for level in range(5):
            size = (contract.bid_size or 1) * 100 + level * 200 + contract.conid % 5 * 100
            row: dict[str, object] = {
                "row": 5 + level,
                "focus": 1 if level == 0 else 0,
                "price": _fmt(float(contract.bid - tick * level)),
                "bid": f"{size:,}",
            }
            rows.append(row)
        return {"topic": topic, "data": rows}


def _scaled(value: float) -> str:
    for threshold, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if value >= threshold:
            return f"{value / threshold:.2f}{suffix}"
    return f"{value:.0f}"


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> date:
    first = date(year, month, 1)
    return first + timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))


def _last_weekday(year: int, month: int, weekday: int) -> date:
    last = (date(year + 1, 1, 1) if month == 12 else date(year, month + 1, 1)) - timedelta(days=1)
    return last - timedelta(days=(last.weekday() - weekday) % 7)


def _easter(year: int) -> date:
    a, b, c = year % 19, year // 100, year % 100
    d, e = b // 4, b % 4
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = c // 4, c % 4
    ell = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * ell) // 451
    month = (h + ell - 7 * m + 114) // 31
    day = (h + ell - 7 * m + 114) % 31 + 1
    return date(year, month, day)


def _observed(day: date) -> date:
    if day.weekday() == 5:
        return day - timedelta(days=1)
    if day.weekday() == 6:
        return day + timedelta(days=1)
    return day


def us_holidays(year: int) -> set[date]:
    """NYSE holidays of a year (the rules, so any year works)."""
    days = {
        _observed(date(year, 1, 1)),
        _nth_weekday(year, 1, 0, 3),
        _nth_weekday(year, 2, 0, 3),
        _easter(year) - timedelta(days=2),
        _last_weekday(year, 5, 0),
        _observed(date(year, 6, 19)),
        _observed(date(year, 7, 4)),
        _nth_weekday(year, 9, 0, 1),
        _nth_weekday(year, 11, 3, 4),
        _observed(date(year, 12, 25)),
    }
    next_new_year = date(year + 1, 1, 1)
    if next_new_year.weekday() == 5:
        days.add(date(year, 12, 31))
    return days


def us_early_closes(year: int) -> set[date]:
    """NYSE 1 pm closes: the day before Independence Day, the day after Thanksgiving, Christmas Eve."""
    found = {_nth_weekday(year, 11, 3, 4) + timedelta(days=1)}
    for day in (date(year, 7, 3), date(year, 12, 24)):
        if day.weekday() < 5 and day not in us_holidays(year):
            found.add(day)
    return found
