"""Defaults, API constants and the column hints of every table efw loads."""

from __future__ import annotations

from typing import Any

DEFAULT_BASE_URL = "https://app.elasticfunnels.io/api"
DEFAULT_PER_PAGE = 100
MAX_PER_PAGE = 100
DEFAULT_LOOKBACK_DAYS = 2.0
DEFAULT_RECONCILE_EVERY_DAYS = 7.0
DEFAULT_CONCURRENCY = 8
DEFAULT_TIMEOUT_SECONDS = 30.0
DEFAULT_RETRY_BUDGET_SECONDS = 300.0
DEFAULT_RETRY_FLOOR_SECONDS = 1.0
# Elasticsearch answers no page whose end passes `index.max_result_window`,
# 10,000 unless the vendor changed it. 0 turns the partitioned scan off.
DEFAULT_MAX_RESULT_WINDOW = 10_000
# A field longer than this is refused rather than loaded: no real name, city or
# email comes near it, and one such value can bloat every later query.
MAX_FIELD_CHARS = 65_536

MONEY_FIELDS = (
    "total_revenue",
    "total_refunds",
    "total_chargebacks",
    "lifetime_value",
    "abandoned_value",
)
DATE_FIELDS = ("first_order_date", "last_order_date")
INT_FIELDS = ("total_orders", "order_frequency", "products_purchased")
TEXT_FIELDS = (
    "customer_email",
    "customer_name",
    "customer_first_name",
    "customer_last_name",
    "customer_phone",
    "customer_country",
    "customer_state",
    "customer_city",
)
BOOL_FIELDS = ("is_abandoned_customer",)
LIST_COLUMNS = TEXT_FIELDS + DATE_FIELDS + INT_FIELDS + MONEY_FIELDS + BOOL_FIELDS

MONEY: dict[str, Any] = {"data_type": "decimal", "precision": 14, "scale": 2}
TIMESTAMP: dict[str, Any] = {"data_type": "timestamp", "timezone": True}


def _columns(**types: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: {"name": name, "nullable": True, **hint} for name, hint in types.items()
    }


TEXT = {"data_type": "text"}
BIGINT = {"data_type": "bigint"}
BOOL = {"data_type": "bool"}
DATE = {"data_type": "date"}

CUSTOMER_COLUMNS = {
    "email_key": {"name": "email_key", "data_type": "text", "nullable": False},
    **_columns(**{name: TEXT for name in TEXT_FIELDS}),
    **_columns(**{name: TIMESTAMP for name in DATE_FIELDS}),
    **_columns(**{name: BIGINT for name in INT_FIELDS}),
    **_columns(**{name: MONEY for name in MONEY_FIELDS}),
    **_columns(is_abandoned_customer=BOOL),
    **_columns(row_hash=TEXT, synced_at=TIMESTAMP, deleted_at=TIMESTAMP),
}

DETAIL_COLUMNS = {
    "email_key": {"name": "email_key", "data_type": "text", "nullable": False},
    **_columns(
        email=TEXT,
        name=TEXT,
        phone=TEXT,
        country=TEXT,
        state=TEXT,
        city=TEXT,
        address=TEXT,
        total_orders=BIGINT,
        total_revenue=MONEY,
        total_refunds=MONEY,
        total_chargebacks=MONEY,
        lifetime_value=MONEY,
        average_order_value=MONEY,
        first_order_date=TIMESTAMP,
        last_order_date=TIMESTAMP,
        list_row_hash=TEXT,
        synced_at=TIMESTAMP,
    ),
}

ORDER_COLUMNS = _columns(id=TEXT, date=TIMESTAMP, total=MONEY, status=TEXT)
PRODUCT_COLUMNS = _columns(value=TEXT)
SUBSCRIPTION_COLUMNS = _columns(
    id=BIGINT, status=TEXT, product=TEXT, next_charge_date=DATE
)

QUICK_ACCESS_COLUMNS = _columns(
    run_at=TIMESTAMP,
    all_customers=BIGINT,
    customers=BIGINT,
    abandons=BIGINT,
    chargebacks=BIGINT,
    refunds=BIGINT,
)

QUARANTINE_COLUMNS = _columns(
    found_at=TIMESTAMP,
    resource=TEXT,
    kind=TEXT,
    email_key=TEXT,
    reason=TEXT,
    record=TEXT,
)
