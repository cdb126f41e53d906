"""Accounts and portfolio bodies as CPAPI renders them, computed from the book.

Balances follow the positions: net liquidation is cash plus marked positions, margin is a flat
share of the gross position value, so a simulated fill moves every figure consistently.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Final

from ._book import SimAccount, SimBook, SimContract, SimPosition, SimProfile

PAGE_SIZE: Final = 100
"""Positions per page, as current gateways serve them."""

INITIAL_MARGIN_RATE: Final = Decimal("0.25")
MAINTENANCE_MARGIN_RATE: Final = Decimal("0.20")
BUYING_POWER_MULTIPLIER: Final = Decimal(4)

SERVER_INFO: Final = {"serverName": "SimCPAPI01", "serverVersion": "Build 10.30.1c, simulator"}


def _cents(value: Decimal) -> float:
    return float(value.quantize(Decimal("0.01")))


def mark_price(contract: SimContract) -> Decimal:
    """The price positions are marked at: last, else prior close, else mid."""
    if contract.last is not None:
        return contract.last
    if contract.prior_close is not None:
        return contract.prior_close
    if contract.bid is not None and contract.ask is not None:
        return (contract.bid + contract.ask) / 2
    return Decimal(0)


def iserver_accounts(book: SimBook, profile: SimProfile, session_id: str, selected: str) -> dict[str, object]:
    """`/iserver/accounts` for the logged-in profile; an advisor's master has child accounts."""
    accounts = list(profile.accounts)
    props = {
        "hasChildAccounts": False,
        "supportsCashQty": True,
        "supportsFractions": True,
        "allowCustomerTime": False,
        "liteUnderPro": False,
        "noFXConv": False,
        "isProp": False,
        "autoFx": False,
    }
    return {
        "accounts": accounts,
        "acctProps": {
            account: dict(props) | {"hasChildAccounts": profile.advisor and account == accounts[0]}
            for account in accounts
        },
        "aliases": {account: account for account in accounts},
        "allowFeatures": {
            "allowCrypto": False,
            "allowFXConv": True,
            "allowFA": profile.advisor,
            "allowMTA": True,
            "allowTypeAhead": True,
            "allowedAssetTypes": "STK,CFD,OPT,FOP,WAR,FUT,BAG,PDC,CASH,IND,BOND,BILL,FUND,SLB,News,CMDTY,IOPT,ICU,ICS",
            "allowEventTrading": True,
            "liteUser": False,
            "research": True,
            "showTaxOpt": True,
            "showWebNews": True,
            "snapshotRefreshTimeout": 30,
        },
        "chartPeriods": {"STK": ["*"], "CFD": ["*"], "OPT": ["2h", "1d", "2d", "1w", "1m"]},
        "groups": [],
        "profiles": [],
        "selectedAccount": selected,
        "serverInfo": dict(SERVER_INFO),
        "sessionId": session_id[:8] + ".0000004e",
        "isFT": False,
        "isPaper": profile.is_paper,
    }


def portfolio_account(account: SimAccount, created_ms: int) -> dict[str, object]:
    """One element of `/portfolio/accounts` (and the body of `/portfolio/{id}/meta`)."""
    return {
        "id": account.account_id,
        "PrepaidCrypto-Z": False,
        "PrepaidCrypto-P": False,
        "brokerageAccess": True,
        "accountId": account.account_id,
        "accountVan": account.account_id,
        "accountTitle": account.title,
        "displayName": account.title,
        "accountAlias": None,
        "accountStatus": created_ms,
        "currency": account.currency,
        "type": account.account_type,
        "tradingType": "PMRGN",
        "businessType": "IB_PROSERVE",
        "ibEntity": "IBLLC-US",
        "faclient": False,
        "clearingStatus": "O",
        "covestor": False,
        "noClientTrading": False,
        "trackVirtualFXPortfolio": True,
        "parent": {"mmc": [], "accountId": "", "isMParent": False, "isMChild": False, "isMultiplex": False},
        "desc": account.account_id,
    }


def _position_value(book: SimBook, position: SimPosition) -> tuple[Decimal, str]:
    contract = book.contracts[position.conid]
    return position.quantity * mark_price(contract), contract.currency


def figures(book: SimBook, account: SimAccount) -> dict[str, Decimal]:
    """Balances and margin of one account in its base currency, keyed by CPAPI summary metric."""
    base = account.currency
    cash = sum((amount * book.fx_rate(ccy, base) for ccy, amount in account.cash.items()), Decimal(0))
    long_short = [_position_value(book, p) for p in book.positions_of(account.account_id)]
    net_value = sum((value * book.fx_rate(ccy, base) for value, ccy in long_short), Decimal(0))
    gross = sum((abs(value) * book.fx_rate(ccy, base) for value, ccy in long_short), Decimal(0))
    net_liquidation = cash + net_value
    initial = gross * INITIAL_MARGIN_RATE
    maintenance = gross * MAINTENANCE_MARGIN_RATE
    available = net_liquidation - initial
    return {
        "netliquidation": net_liquidation,
        "totalcashvalue": cash,
        "settledcash": cash,
        "grosspositionvalue": gross,
        "initmarginreq": initial,
        "maintmarginreq": maintenance,
        "availablefunds": available,
        "excessliquidity": net_liquidation - maintenance,
        "buyingpower": available * BUYING_POWER_MULTIPLIER,
        "equitywithloanvalue": net_liquidation,
        "fullinitmarginreq": initial,
        "fullmaintmarginreq": maintenance,
        "fullavailablefunds": available,
        "fullexcessliquidity": net_liquidation - maintenance,
        "regtequity": net_liquidation,
        "regtmargin": initial,
        "sma": available,
        "accruedcash": Decimal(0),
    }


def summary(book: SimBook, account: SimAccount, now: datetime) -> dict[str, object]:
    """`/portfolio/{id}/summary`: metric objects, with `-c` (commodities) and `-s` (securities) variants."""
    stamp = int(now.timestamp() * 1000)

    def metric(amount: Decimal | None, *, currency: str | None, value: str | None = None) -> dict[str, object]:
        return {
            "amount": _cents(amount) if amount is not None else 0.0,
            "currency": currency,
            "isNull": False,
            "timestamp": stamp,
            "value": value,
            "severity": 0,
        }

    body: dict[str, object] = {
        "accountcode": metric(None, currency=None, value=account.account_id),
        "accountready": metric(None, currency=None, value="true"),
        "accounttype": metric(None, currency=None, value=account.account_type),
        "daytradesremaining": metric(Decimal(-1), currency=None),
        "cushion": metric(None, currency=None, value="1"),
        "leverage-s": metric(Decimal(0), currency=None),
    }
    for key, amount in figures(book, account).items():
        body[key] = metric(amount, currency=account.currency)
        body[f"{key}-s"] = metric(amount, currency=account.currency)
        body[f"{key}-c"] = metric(Decimal(0), currency=account.currency)
    return body


def ledger(book: SimBook, account: SimAccount, now: datetime) -> dict[str, object]:
    """`/portfolio/{id}/ledger`: one entry per currency plus `BASE`; `timestamp` is in seconds."""
    stamp = int(now.timestamp())
    positions = book.positions_of(account.account_id)
    currencies = sorted(set(account.cash) | {book.contracts[p.conid].currency for p in positions})
    body: dict[str, object] = {}

    def entry(currency: str, cash: Decimal, stock: Decimal, unrealized: Decimal, rate: Decimal) -> dict[str, object]:
        return {
            "acctcode": account.account_id,
            "cashbalance": _cents(cash),
            "cashbalancefxsegment": 0.0,
            "commoditymarketvalue": 0.0,
            "corporatebondsmarketvalue": 0.0,
            "cryptocurrencyvalue": 0.0,
            "currency": currency,
            "dividends": 0.0,
            "exchangerate": float(rate),
            "funds": 0.0,
            "futuremarketvalue": 0.0,
            "futureoptionmarketvalue": 0.0,
            "futuresonlypnl": 0.0,
            "interest": 0.0,
            "issueroptionsmarketvalue": 0.0,
            "key": "LedgerList",
            "moneyfunds": 0.0,
            "netliquidationvalue": _cents(cash + stock),
            "realizedpnl": 0.0,
            "secondkey": currency,
            "sessionid": 1,
            "settledcash": _cents(cash),
            "severity": 0,
            "stockmarketvalue": _cents(stock),
            "stockoptionmarketvalue": 0.0,
            "tbillsmarketvalue": 0.0,
            "tbondsmarketvalue": 0.0,
            "timestamp": stamp,
            "unrealizedpnl": _cents(unrealized),
            "warrantsmarketvalue": 0.0,
        }

    totals = [Decimal(0), Decimal(0), Decimal(0)]
    for currency in currencies:
        held = [p for p in positions if book.contracts[p.conid].currency == currency]
        cash = account.cash.get(currency, Decimal(0))
        stock = sum((p.quantity * mark_price(book.contracts[p.conid]) for p in held), Decimal(0))
        unrealized = sum((p.quantity * (mark_price(book.contracts[p.conid]) - p.avg_cost) for p in held), Decimal(0))
        rate = book.fx_rate(currency, account.currency)
        body[currency] = entry(currency, cash, stock, unrealized, rate)
        for i, amount in enumerate((cash, stock, unrealized)):
            totals[i] += amount * rate
    if currencies:
        last = body[currencies[-1]]
        if isinstance(last, dict):
            last["endofbundle"] = 1
    body["BASE"] = entry("BASE", totals[0], totals[1], totals[2], Decimal(1))
    return body


def position_row(book: SimBook, position: SimPosition) -> dict[str, object]:
    """One warm row of `/portfolio/{id}/positions/{page}`."""
    contract = book.contracts[position.conid]
    price = mark_price(contract)
    value = position.quantity * price
    return {
        "acctId": position.account_id,
        "conid": contract.conid,
        "contractDesc": contract.symbol,
        "position": float(position.quantity),
        "mktPrice": float(price),
        "mktValue": _cents(value),
        "currency": contract.currency,
        "avgCost": float(position.avg_cost),
        "avgPrice": float(position.avg_cost),
        "realizedPnl": _cents(position.realized_pnl),
        "unrealizedPnl": _cents(value - position.quantity * position.avg_cost),
        "exchs": None,
        "expiry": None,
        "putOrCall": None,
        "multiplier": 0.0,
        "strike": "0",
        "exerciseStyle": None,
        "conExchMap": [],
        "assetClass": contract.sec_type,
        "undConid": 0,
        "model": "",
        "ticker": contract.symbol,
        "name": contract.company_name,
        "fullName": contract.symbol,
        "listingExchange": contract.listing_exchange,
        "countryCode": "US" if contract.currency == "USD" else "DE",
        "isUS": contract.currency == "USD",
        "hasOptions": contract.sec_type == "STK",
        "type": contract.stock_type,
        "sector": contract.industry,
        "group": contract.category,
        "sectorGroup": contract.category,
        "isEventContract": False,
        "pageSize": PAGE_SIZE,
        "time": 12,
        "incrementRules": [{"lowerEdge": 0.0, "increment": 0.01}],
        "displayRule": {
            "magnification": 0,
            "displayRuleStep": [{"decimalDigits": 2, "lowerEdge": 0.0, "wholeDigits": 4}],
        },
    }


def positions_page(book: SimBook, account_id: str, page: int) -> list[dict[str, object]]:
    """One page of positions; `[]` past the end."""
    rows = book.positions_of(account_id)[page * PAGE_SIZE : (page + 1) * PAGE_SIZE]
    return [position_row(book, position) for position in rows]
