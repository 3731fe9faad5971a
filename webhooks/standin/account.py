"""The core of the stand-in's in-memory Stripe account: tables, ids, events, lists, ``expand``.

Objects are kept in their Stripe JSON form (built by ``objects.build``) and mutated in place; every
state change records an Event whose ``data.object`` is a snapshot. Operations check everything
before they change anything, so a rejected call leaves no trace (a declined payment is recorded,
as at Stripe). Callers hold ``lock`` around a whole request (the HTTP server does); the lock is
re-entrant. Each kind of Stripe object has its own module (``customers``, ``catalog``,
``invoices``, ...) adding its operations to this core; ``state.Store`` puts them together.
"""

from __future__ import annotations

import contextlib
import copy
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from stripe._api_version import _ApiVersion

from webhooks.standin import expansion, objects, sdk_types
from webhooks.standin.schema import StripeError, invalid

API_VERSION = _ApiVersion.CURRENT
INLINE_LIST_LIMIT = 10  # Stripe embeds at most 10 lines in an invoice or credit note

Obj = dict[str, Any]
Params = dict[str, Any]

# Object name for each id prefix, to resolve ``expand`` and ids of unknown kind.
_KIND_BY_PREFIX = {prefix: name for name, prefix in objects.ID_PREFIXES.items()}


def no_such(kind: str, object_id: str, *, param: str | None = None) -> StripeError:
    """Stripe answers 404 for an id in the URL, 400 for an id passed as a parameter."""
    return StripeError(
        404 if param is None else 400,
        "invalid_request_error",
        f"No such {kind}: '{object_id}'",
        param=param or "id",
        code="resource_missing",
    )


_CURRENCY = re.compile(r"^[a-z]{3}$")


def currency_code(value: str, *, param: str = "currency") -> str:
    """A currency as Stripe keeps it: a three-letter ISO code, lower case."""
    code = value.lower()
    if not _CURRENCY.match(code):
        raise invalid(f"Invalid currency: {value}.", param=param)
    return code


def merge_metadata(current: dict[str, str] | None, update: Any) -> dict[str, str]:
    """Stripe's metadata semantics: ``""`` clears all, a key set to ``""`` is removed."""
    if update == "":
        return {}
    merged = dict(current or {})
    for key, value in update.items():
        if value == "":
            merged.pop(key, None)
        else:
            merged[key] = value
    if len(merged) > 50:
        raise invalid("Metadata can have at most 50 keys.", param="metadata")
    for key, value in merged.items():
        if len(key) > 40 or len(value) > 500:
            raise invalid(
                "Metadata keys are limited to 40 characters and values to 500.",
                param=f"metadata[{key}]",
            )
    return merged


def diff(before: Obj, after: Obj) -> dict[str, Any]:
    """``previous_attributes`` of an update event: the old value of every changed top field."""
    return {key: before.get(key) for key in after if before.get(key) != after.get(key)}


@dataclass(frozen=True)
class RequestInfo:
    """What an Event's ``request`` says: the API request that caused it, or none (dashboard)."""

    id: str | None = None
    idempotency_key: str | None = None


class Account:
    """All objects of one stand-in Stripe account, and what every operation needs."""

    def __init__(
        self,
        *,
        now: Callable[[], float] = time.time,
        on_event: Callable[[Obj], None] | None = None,
        base_url: str = "http://127.0.0.1",
    ) -> None:
        self.lock = threading.RLock()
        self.base_url = base_url
        self._now = now
        self._on_event = on_event
        self._tables: dict[str, dict[str, Obj]] = {}
        self._created: Counter[str] = Counter()
        self._invoice_lines: dict[str, list[str]] = {}
        self._credit_note_lines: dict[str, list[str]] = {}
        # Bookkeeping Stripe does not show: kept beside the objects so responses stay exact.
        self._days_until_due: dict[str, int | None] = {}
        self._balance_applied: dict[str, int] = {}
        self._line_of_item: dict[str, str] = {}
        self._setup_intent_metadata: dict[str, dict[str, str]] = {}
        """A setup-mode Checkout Session's ``setup_intent_data.metadata``, for its SetupIntent."""
        self._request = RequestInfo()
        self.declined_customers: set[str] = set()
        self.declines_left = 0
        self.declining_payment_methods: set[str] = set()
        """Cards made from ``tok_chargeCustomerFail``: every charge of them is declined."""

    # -- plumbing -----------------------------------------------------------------------------

    def now(self) -> int:
        return int(self._now())

    def set_clock(self, now: Callable[[], float]) -> None:
        self._now = now

    @contextlib.contextmanager
    def request_scope(self, request_id: str | None, idempotency_key: str | None) -> Iterator[None]:
        previous = self._request
        self._request = RequestInfo(request_id, idempotency_key)
        try:
            yield
        finally:
            self._request = previous

    def table(self, kind: str) -> dict[str, Obj]:
        return self._tables.setdefault(kind, {})

    def count(self, kind: str) -> int:
        """How many objects of ``kind`` (``"customer"``, ``"invoice"``...) were ever created."""
        return self._created[kind]

    def all(self, kind: str) -> list[Obj]:
        """Snapshots of every object of ``kind``, oldest first."""
        with self.lock:
            return copy.deepcopy(list(self.table(kind).values()))

    def _insert(self, kind: str, obj: Obj) -> Obj:
        self.table(kind)[obj["id"]] = obj
        self._created[kind] += 1
        return obj

    def _new(self, kind: str, **values: Any) -> Obj:
        values.setdefault("id", objects.new_id(kind))
        if "created" in sdk_types.fields(objects.resource_class(kind)):
            values.setdefault("created", self.now())
        return self._insert(kind, objects.build(kind, **values))

    def get(self, kind: str, object_id: str, *, param: str | None = None) -> Obj:
        obj = self.table(kind).get(object_id)
        if obj is None:
            raise no_such(kind, object_id, param=param)
        return obj

    def _live(self, kind: str, object_id: str, *, param: str | None = None) -> Obj:
        obj = self.get(kind, object_id, param=param)
        if obj.get("deleted"):
            raise no_such(kind, object_id, param=param)
        return obj

    def find(self, object_id: str) -> Obj | None:
        """Any object by id (products may have caller-chosen ids without a prefix)."""
        kind = _KIND_BY_PREFIX.get(object_id.rsplit("_", 1)[0])
        if kind is not None and object_id in self.table(kind):
            return self.table(kind)[object_id]
        return next((t[object_id] for t in self._tables.values() if object_id in t), None)

    def emit(self, event_type: str, obj: Obj, previous: dict[str, Any] | None = None) -> Obj:
        request = objects.sub_object(
            "event", "Request", id=self._request.id, idempotency_key=self._request.idempotency_key
        )
        # An event cannot be expanded: its object carries no includable field (nor do the
        # previous values of one).
        snapshot = expansion.without_includable(copy.deepcopy(obj))
        if previous is not None:
            previous = {k: v for k, v in previous.items() if k in snapshot or k not in obj}
        event = self._new(
            "event",
            api_version=API_VERSION,
            data={"object": snapshot, "previous_attributes": previous},
            pending_webhooks=1 if self._on_event else 0,
            request=request,
            type=event_type,
        )
        if self._on_event is not None:
            self._on_event(copy.deepcopy(event))
        return event

    def _updated(self, event_type: str, obj: Obj, before: Obj) -> None:
        changes = diff(before, obj)
        if changes:
            self.emit(event_type, obj, changes)

    # -- lists --------------------------------------------------------------------------------

    def page(self, items: list[Obj], params: Params, url: str) -> Obj:
        """One page of a newest-first list: ``limit``, ``starting_after``, ``ending_before``."""
        limit = params.get("limit", 10)
        if not 1 <= limit <= 100:
            raise invalid("Invalid limit: must be between 1 and 100", param="limit")
        ids = [item["id"] for item in items]
        window = items
        for cursor in ("starting_after", "ending_before"):
            if cursor in params:
                if params[cursor] not in ids:
                    raise no_such("object", params[cursor], param=cursor)
                index = ids.index(params[cursor])
                window = items[index + 1 :] if cursor == "starting_after" else items[:index]
        data = window[-limit:] if "ending_before" in params else window[:limit]
        return objects.list_object(copy.deepcopy(data), url=url, has_more=len(window) > len(data))

    def select(self, kind: str, params: Params, filters: dict[str, str] | None = None) -> list[Obj]:
        """Objects of ``kind``, newest first, narrowed by equality filters and ``created``."""
        items = [o for o in reversed(self.table(kind).values()) if not o.get("deleted")]
        for param, field in (filters or {}).items():
            if param in params:
                items = [o for o in items if o.get(field) == params[param]]
        if "created" in params:
            items = [o for o in items if in_range(o["created"], params["created"])]
        return items


def in_range(value: int, condition: Any) -> bool:
    if isinstance(condition, int):
        return value == condition
    checks = {
        "gt": lambda bound: value > bound,
        "gte": lambda bound: value >= bound,
        "lt": lambda bound: value < bound,
        "lte": lambda bound: value <= bound,
    }
    return all(checks[op](bound) for op, bound in condition.items())


def decimal_text(value: Any) -> str | None:
    """Stripe's decimal strings: ``"1250"``, ``"12.5"`` (no exponent, no trailing zeros)."""
    if value is None:
        return None
    return format(Decimal(value).normalize(), "f")
