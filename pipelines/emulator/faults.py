"""Fault settings for the emulator, and the dice that apply them.

`Faults` is the single place where every misbehaviour the emulator can show is
switched on. All of them are off by default. The same settings are reachable
from Python (`emulator.faults.rate_429 = 0.2`), from the `efw emulator serve`
flags and from the `/_emulator/faults` admin route, and every value is checked
and normalised when it is assigned, so the three doors accept the same things.

Faults apply to the customer routes only, never to the admin routes.
"""

from __future__ import annotations

import copy
import dataclasses
import email.utils
import itertools
import math
import random
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

#: Kinds of bad data that `Faults.bad_data` can inject.
BAD_DATA_KINDS = (
    "money_string",
    "bad_date",
    "missing_email",
    "case_duplicate",
    "huge_field",
    "html_200",
)

#: What a `huge_field` injection puts in `customer_city`: ten mebibytes.
HUGE_FIELD_CHARS = 10 * 1024 * 1024

#: The unparseable date that `bad_date` serves.
BAD_DATE = "31/02/1998 25:00"

_PROBABILITIES = ("rate_429", "rate_5xx", "rate_drop", "rate_stall")
_DURATIONS = (
    "latency_ms",
    "jitter_ms",
    "stall_seconds",
    "visibility_delay_seconds",
    "page_drift_seconds",
)
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


@dataclass
class Faults:
    """What the emulator does wrong, and how often.

    Every field is checked when assigned; a bad value raises `ValueError` whose
    message starts with the field name. Strings are accepted wherever a number,
    flag or list is expected, so CLI flags and JSON can be assigned as they are.

    Per request, in this order of precedence:

    - `latency_ms` and `jitter_ms`: answer `latency_ms` plus a uniform draw in
      `[0, jitter_ms]` after the request arrives (or as soon as the answer is
      ready, if working it out took longer).
    - `rate_drop`: probability of closing the connection without any response.
      Over HTTP the client sees `RemoteProtocolError` (or `ReadError`); through
      the in-process transport `httpx.RemoteProtocolError` is raised. A dropped
      request never reaches the store.
    - `rate_stall` and `stall_seconds`: probability of answering only after
      `stall_seconds`, meant to be longer than the client's read timeout.
      The in-process transport honours the request's read timeout and raises
      `httpx.ReadTimeout` once it has passed.
    - `rps_budget`: answer 429 once more than this many requests arrived
      within the last second (a sliding window; rejected requests do not use
      the budget). `None` or 0 switches it off.
    - `rate_429`: probability of a 429 regardless of the budget.
    - `retry_after`: the `Retry-After` header on every 429: `"N"` (whole
      seconds, `"0"` included), `"date:N"` (an HTTP date N seconds ahead of
      the wall clock) or `"none"` (no header).
    - `rate_5xx`, `statuses_5xx` and `body_5xx`: probability of a server error
      whose status is drawn from `statuses_5xx`, with a Laravel-style JSON body
      or an nginx-style HTML page (`"json"` or `"html"`).

    Then, on requests that got through:

    - `es_window`: a list page whose end (`page * per_page`) passes 10,000
      answers 500 with Elasticsearch's result-window message, as the real
      backend does.
    - `visibility_delay_seconds`: events younger than this (on the emulator
      clock) are not yet visible to the list and quick-access routes; the
      details route sees everything.
    - `page_drift_seconds`: after each list page served, the emulator clock
      moves forward this much, so events arrive between page requests.
    - `bad_data`: a set of kinds among `BAD_DATA_KINDS`. Rules, chosen so a
      drill knows exactly what it gets:

      * list routes: only page 1 of any query is touched. `money_string`
        turns row 0's `total_revenue` into a string such as `"12,00 USD"`;
        `bad_date` sets row 1's `last_order_date` to `"31/02/1998 25:00"`;
        `missing_email` sets row 2's `customer_email` to null; `huge_field`
        puts 10 MiB in row 3's `customer_city`; `case_duplicate` appends a
        copy of row 0 (as it was before any other injection) whose email is
        upper-cased and wrapped in spaces; `html_200` answers the whole page
        with status 200 and an HTML body. A row index past the page's end
        falls back to the last row; a field not among the requested
        `columns` is left alone. `from`, `to` and `total` are not adjusted.
      * details route: every answer is touched. `money_string` and
        `bad_date` hit `stats.total_revenue` / `stats.last_order_date` and
        the first order's `total` / `date`; `missing_email` nulls
        `customer.email`; `case_duplicate` serves `customer.email`
        upper-cased and wrapped in spaces; `huge_field` fills
        `customer.city`; `html_200` answers 200 with HTML.

    `seed` seeds the random draws, so a drill replays the same faults for the
    same sequence of requests. Changing it restarts the sequence.
    """

    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    rate_429: float = 0.0
    rps_budget: float | None = None
    retry_after: str = "1"
    rate_5xx: float = 0.0
    statuses_5xx: tuple[int, ...] = (500, 502, 503, 504)
    body_5xx: str = "json"
    rate_drop: float = 0.0
    rate_stall: float = 0.0
    stall_seconds: float = 30.0
    es_window: bool = False
    visibility_delay_seconds: float = 0.0
    page_drift_seconds: float = 0.0
    bad_data: frozenset[str] = field(default_factory=frozenset)
    seed: int = 0

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, _coerce(name, value))
        if name == "seed":
            # Any assignment of the seed, even of the same value, and any new
            # Faults object restart the random sequence.
            super().__setattr__("_seeding", next(_SEEDINGS))

    def update(self, changes: dict[str, Any]) -> None:
        """Apply several settings at once, all or none.

        Raises `FaultsError` listing every refused field; nothing changes then.
        """
        trial = copy.copy(self)
        errors: dict[str, str] = {}
        for name, value in changes.items():
            if name not in _FIELD_NAMES:
                errors[name] = f"{name} is not a fault setting."
                continue
            try:
                setattr(trial, name, value)
            except ValueError as exc:
                errors[name] = str(exc)
        if errors:
            raise FaultsError(errors)
        for name in changes:
            setattr(self, name, getattr(trial, name))

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain JSON values."""
        out = dataclasses.asdict(self)
        out["statuses_5xx"] = list(self.statuses_5xx)
        out["bad_data"] = sorted(self.bad_data)
        return out


class FaultsError(ValueError):
    """Refused fault settings; `errors` maps each field to its message."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(errors.values()))
        self.errors = errors


_FIELD_NAMES = frozenset(f.name for f in dataclasses.fields(Faults))
_SEEDINGS = itertools.count(1)


def _coerce(name: str, value: Any) -> Any:
    if name in _PROBABILITIES:
        number = _number(name, value)
        if not 0.0 <= number <= 1.0:
            raise ValueError(f"{name} must be a probability between 0 and 1.")
        return number
    if name in _DURATIONS:
        number = _number(name, value)
        if number < 0:
            raise ValueError(f"{name} must not be negative.")
        return number
    if name == "rps_budget":
        if value is None or value == "" or str(value).lower() == "none":
            return None
        number = _number(name, value)
        if number < 0:
            raise ValueError("rps_budget must not be negative.")
        return number or None
    if name == "retry_after":
        return _retry_after_spec(value)
    if name == "statuses_5xx":
        return _statuses(value)
    if name == "body_5xx":
        if value not in ("json", "html"):
            raise ValueError("body_5xx must be 'json' or 'html'.")
        return value
    if name == "es_window":
        return _flag(name, value)
    if name == "bad_data":
        return _kinds(value)
    if name == "seed":
        if isinstance(value, bool):
            raise ValueError("seed must be an integer.")
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ValueError("seed must be an integer.") from None
    return value


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number.")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number.") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number.")
    return number


def _flag(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{name} must be true or false.")


def _retry_after_spec(value: Any) -> str:
    text = str(value).strip().lower()
    if text == "none":
        return text
    seconds = text.removeprefix("date:")
    if not seconds.isdigit():
        message = "retry_after must be 'N', 'date:N' or 'none' (N whole seconds)."
        raise ValueError(message)
    return text


def _statuses(value: Any) -> tuple[int, ...]:
    items = value.split(",") if isinstance(value, str) else value
    try:
        statuses = tuple(int(item) for item in items)
    except (TypeError, ValueError):
        raise ValueError("statuses_5xx must be a list of 5xx status codes.") from None
    if not statuses or any(not 500 <= status <= 599 for status in statuses):
        raise ValueError("statuses_5xx must be a non-empty list of 5xx status codes.")
    return statuses


def _kinds(value: Any) -> frozenset[str]:
    if value is None:
        return frozenset()
    items = value.split(",") if isinstance(value, str) else value
    try:
        kinds = frozenset(item.strip() for item in items if item.strip())
    except (AttributeError, TypeError):
        raise ValueError("bad_data must be a list of kinds.") from None
    unknown = sorted(kinds - set(BAD_DATA_KINDS))
    if unknown:
        raise ValueError(
            f"bad_data has unknown kinds {unknown}; known: {', '.join(BAD_DATA_KINDS)}."
        )
    return kinds


def retry_after_header(spec: str, now: float | None = None) -> str | None:
    """The `Retry-After` value for a spec such as "2", "date:5" or "none"."""
    if spec == "none":
        return None
    if spec.startswith("date:"):
        # HTTP dates have whole seconds: round up so the date is never
        # sooner than promised.
        ahead = int(spec.removeprefix("date:"))
        moment = math.ceil(time.time() if now is None else now) + ahead
        return email.utils.formatdate(moment, usegmt=True)
    return str(int(spec))


@dataclass(frozen=True)
class Decision:
    """What the dice decided for one request."""

    delay: float = 0.0
    action: str | None = None  # "drop", "stall", "429" or "5xx"
    status: int | None = None


class FaultDice:
    """The random and rate-based decisions, one request at a time.

    Thread-safe: every decision draws from one seeded generator under a lock,
    in a fixed order, so the same request sequence replays the same faults.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seeding = 0
        self._rng = random.Random()
        self._admitted: deque[float] = deque()

    def roll(self, faults: Faults) -> Decision:
        """Decide latency and which fault, if any, hits this request."""
        with self._lock:
            seeding = getattr(faults, "_seeding", 0)
            if seeding != self._seeding:
                self._seeding = seeding
                self._rng.seed(faults.seed)
            # Always draw the same five numbers, whatever is switched on, so
            # turning one fault on does not reshuffle the others.
            jitter, drop, stall, limited, failed = (
                self._rng.random() for _ in range(5)
            )
            delay = (faults.latency_ms + jitter * faults.jitter_ms) / 1000.0
            if drop < faults.rate_drop:
                return Decision(delay, "drop")
            if stall < faults.rate_stall:
                return Decision(delay, "stall")
            if self._over_budget(faults.rps_budget) or limited < faults.rate_429:
                return Decision(delay, "429", 429)
            if failed < faults.rate_5xx:
                status = self._rng.choice(faults.statuses_5xx)
                return Decision(delay, "5xx", status)
            return Decision(delay)

    def _over_budget(self, budget: float | None) -> bool:
        if not budget:
            return False
        now = time.monotonic()
        while self._admitted and now - self._admitted[0] >= 1.0:
            self._admitted.popleft()
        if len(self._admitted) >= budget:
            return True
        self._admitted.append(now)
        return False


def corrupt_page(rows: list[dict[str, Any]], kinds: frozenset[str]) -> list[dict]:
    """Page 1's rows with the `bad_data` kinds injected (see `Faults`)."""
    if not rows:
        return rows
    rows = [dict(row) for row in rows]
    original = dict(rows[0])

    def row(index: int) -> dict[str, Any]:
        return rows[min(index, len(rows) - 1)]

    if "money_string" in kinds and "total_revenue" in row(0):
        row(0)["total_revenue"] = money_string(row(0)["total_revenue"])
    if "bad_date" in kinds and "last_order_date" in row(1):
        row(1)["last_order_date"] = BAD_DATE
    if "missing_email" in kinds and "customer_email" in row(2):
        row(2)["customer_email"] = None
    if "huge_field" in kinds and "customer_city" in row(3):
        row(3)["customer_city"] = "X" * HUGE_FIELD_CHARS
    if "case_duplicate" in kinds and original.get("customer_email"):
        original["customer_email"] = case_twin(original["customer_email"])
        rows.append(original)
    return rows


def corrupt_details(payload: dict[str, Any], kinds: frozenset[str]) -> dict:
    """A details answer with the `bad_data` kinds injected (see `Faults`)."""
    payload = copy.deepcopy(payload)
    customer = payload.get("customer") or {}
    stats = payload.get("stats") or {}
    first_order = (payload.get("orders") or [None])[0]
    if "money_string" in kinds:
        stats["total_revenue"] = money_string(stats.get("total_revenue"))
        if first_order is not None:
            first_order["total"] = money_string(first_order.get("total"))
    if "bad_date" in kinds:
        stats["last_order_date"] = BAD_DATE
        if first_order is not None:
            first_order["date"] = BAD_DATE
    if "case_duplicate" in kinds and customer.get("email"):
        customer["email"] = case_twin(customer["email"])
    if "missing_email" in kinds:
        customer["email"] = None
    if "huge_field" in kinds:
        customer["city"] = "X" * HUGE_FIELD_CHARS
    return payload


def money_string(value: Any) -> str:
    """A money amount as a European-formatted string: 12.0 -> "12,00 USD"."""
    try:
        amount = float(value or 0)
    except (TypeError, ValueError):
        amount = 0.0
    return f"{amount:.2f}".replace(".", ",") + " USD"


def case_twin(email_address: str) -> str:
    """The same email in other clothes: upper case, wrapped in spaces."""
    return f"  {email_address.upper()} "
