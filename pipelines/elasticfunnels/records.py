"""Turn API rows into typed records, or say exactly why a row cannot load.

Every value is checked here, before dlt sees it, so a bad row is quarantined
with its reason and never becomes a package that fails at normalize and blocks
every later run.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from pipelines.elasticfunnels import settings

CENT = Decimal("0.01")
# What the warehouse columns hold: money is DECIMAL(14, 2), counts BIGINT. A
# value past them passes every other check, then fails the load, and the
# package holding it would block every later run.
MAX_MONEY = Decimal(10) ** (settings.MONEY["precision"] - settings.MONEY["scale"])
MAX_INT = 2**63 - 1


_UNSET: Any = object()


class BadRecord(ValueError):
    """A row that cannot load. `reason` names the field and what is wrong
    without the value, which may be a customer's name or email: it is what
    logs show. The message adds an excerpt of the value, for the quarantine
    table, which sits beside the rest of the customers' data."""

    def __init__(self, reason: str, value: Any = _UNSET) -> None:
        self.reason = reason
        message = reason if value is _UNSET else f"{reason}: {excerpt(value)!r}"
        super().__init__(message)


def email_key(email: str) -> str:
    """The identity of a customer: the email trimmed and lower-cased."""
    return email.strip().lower()


def excerpt(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} chars)"


def to_money(name: str, value: Any) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise BadRecord(f"`{name}` is a boolean, not an amount", value)
    if isinstance(value, (int, float, Decimal)):
        amount = Decimal(str(value))
    elif isinstance(value, str):
        try:
            amount = Decimal(value.strip())
        except InvalidOperation:
            raise BadRecord(f"`{name}` is not an amount", value) from None
    else:
        raise BadRecord(f"`{name}` is not an amount", value)
    if not amount.is_finite():
        raise BadRecord(f"`{name}` is not a finite amount", value)
    # Rounding a huge amount raises, and rounding may carry it past the limit.
    if abs(amount) < MAX_MONEY:
        amount = amount.quantize(CENT)
    if abs(amount) >= MAX_MONEY:
        raise BadRecord(f"`{name}` is too large an amount", value)
    return amount


def to_int(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise BadRecord(f"`{name}` is a boolean, not a count", value)
    if isinstance(value, float) and not math.isfinite(value):
        raise BadRecord(f"`{name}` is not a whole number", value)
    if isinstance(value, int):
        number = value
    elif isinstance(value, float):
        number = round(value)
    elif isinstance(value, str) and re.fullmatch(r"\s*-?[0-9]+\s*", value):
        number = int(value)
    else:
        raise BadRecord(f"`{name}` is not a whole number", value)
    if abs(number) > MAX_INT:
        raise BadRecord(f"`{name}` is too large a number", value)
    return number


def to_timestamp(name: str, value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise BadRecord(f"`{name}` is not an ISO 8601 date", value)
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise BadRecord(f"`{name}` is not an ISO 8601 date", value) from None
    # The contract says UTC; a value without a zone is taken as UTC.
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        # 0001-01-01 east of UTC, or 9999-12-31 west of it.
        raise BadRecord(
            f"`{name}` lies outside the years 1 to 9999 in UTC", value
        ) from None


def to_date(name: str, value: Any) -> date | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip()[:10])
        except ValueError:
            pass
    raise BadRecord(f"`{name}` is not a date", value)


def to_text(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise BadRecord(f"`{name}` is not text", value)
    if len(value) > settings.MAX_FIELD_CHARS:
        raise BadRecord(
            f"`{name}` is {len(value):,} characters long, over the "
            f"{settings.MAX_FIELD_CHARS:,} efw accepts"
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        # JSON may escape half of a surrogate pair; no file can hold it.
        raise BadRecord(f"`{name}` is not valid Unicode text") from None
    return value


def to_bool(name: str, value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    if value in (0, 1, "0", "1", "true", "false"):
        return value in (1, "1", "true")
    raise BadRecord(f"`{name}` is not true or false", value)


def required_email(name: str, value: Any) -> str:
    email = to_text(name, value)
    if email is None or not email.strip():
        raise BadRecord(f"`{name}` is missing; a customer without an email has no key")
    if "@" not in email:
        raise BadRecord(f"`{name}` is not an email address")
    return email


def customer_record(row: Any) -> dict[str, Any]:
    """A list row as the `customers` table holds it, with its change hash."""
    if not isinstance(row, dict):
        raise BadRecord(f"a list row is {type(row).__name__}, not an object")
    email = required_email("customer_email", row.get("customer_email"))
    record: dict[str, Any] = {"email_key": email_key(email), "customer_email": email}
    for name in settings.TEXT_FIELDS[1:]:
        record[name] = to_text(name, row.get(name))
    for name in settings.DATE_FIELDS:
        record[name] = to_timestamp(name, row.get(name))
    for name in settings.INT_FIELDS:
        record[name] = to_int(name, row.get(name))
    for name in settings.MONEY_FIELDS:
        record[name] = to_money(name, row.get(name))
    record["is_abandoned_customer"] = to_bool(
        "is_abandoned_customer", row.get("is_abandoned_customer")
    )
    record["row_hash"] = row_hash(record)
    return record


def row_hash(record: dict[str, Any]) -> str:
    """A fingerprint of everything the list says about a customer.

    Two syncs compare it to decide whether the details must be fetched again.
    """
    canonical = json.dumps(
        [record.get(name) for name in settings.LIST_COLUMNS],
        default=str,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.blake2b(canonical.encode(), digest_size=12).hexdigest()


def details_record(key: str, body: Any, list_row_hash: str) -> dict[str, Any]:
    """A details answer as the `details` table and its child tables hold it."""
    if not isinstance(body, dict):
        raise BadRecord(f"details are {type(body).__name__}, not an object")
    customer = body.get("customer") or {}
    stats = body.get("stats") or {}
    if not isinstance(customer, dict) or not isinstance(stats, dict):
        raise BadRecord("details `customer` or `stats` is not an object")

    record: dict[str, Any] = {"email_key": key}
    for name in ("email", "name", "phone", "country", "state", "city", "address"):
        record[name] = to_text(f"customer.{name}", customer.get(name))
    record["total_orders"] = to_int("stats.total_orders", stats.get("total_orders"))
    for name in (
        "total_revenue",
        "total_refunds",
        "total_chargebacks",
        "lifetime_value",
        "average_order_value",
    ):
        record[name] = to_money(f"stats.{name}", stats.get(name))
    for name in settings.DATE_FIELDS:
        record[name] = to_timestamp(f"stats.{name}", stats.get(name))
    record["list_row_hash"] = list_row_hash
    record["orders"] = [_order(o) for o in _list(body, "orders")]
    record["subscriptions"] = [_subscription(s) for s in _list(body, "subscriptions")]
    return record


def _list(body: dict[str, Any], name: str) -> list[Any]:
    value = body.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadRecord(f"details `{name}` is {type(value).__name__}, not a list")
    return value


def _order(order: Any) -> dict[str, Any]:
    if not isinstance(order, dict):
        raise BadRecord("an order is not an object")
    order_id = to_text("orders.id", order.get("id"))
    if not order_id:
        raise BadRecord("an order has no `id`")
    products = order.get("products") or []
    if not isinstance(products, list):
        raise BadRecord("an order's `products` is not a list")
    return {
        "id": order_id,
        "date": to_timestamp("orders.date", order.get("date")),
        "total": to_money("orders.total", order.get("total")),
        "status": to_text("orders.status", order.get("status")),
        "products": [to_text("orders.products", p) for p in products],
    }


def _subscription(sub: Any) -> dict[str, Any]:
    if not isinstance(sub, dict):
        raise BadRecord("a subscription is not an object")
    return {
        "id": to_int("subscriptions.id", sub.get("id")),
        "status": to_text("subscriptions.status", sub.get("status")),
        "product": to_text("subscriptions.product", sub.get("product")),
        "next_charge_date": to_date(
            "subscriptions.next_charge_date", sub.get("next_charge_date")
        ),
    }
