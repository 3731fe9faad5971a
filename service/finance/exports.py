"""Finance exports: the invoice register, invoice lines, payments, refunds and credit notes,
usage by merchant and period, revenue and MRR, credit balance movements — as CSV, Parquet or
XLSX, streamed.

Every export is a date range on the row's **accounting date** (invoices and their lines: when
finalized; payments: when paid; refunds, credit notes and credit balance movements: when made;
usage: the period's start; revenue: the month of the invoice) in a chosen timezone, optionally
for one merchant.

- Rows come from a server-side cursor inside a read-only, repeatable-read transaction and are
  written out in fixed batches of ``BATCH_ROWS``: memory holds one batch, never the export.
- Amounts are exact: each money column is the major-unit ``Decimal`` (``99.00``) followed by
  ``<name>_minor``, the integer minor units. No floats are made anywhere; Parquet holds
  ``decimal128`` and ``int64``.
- The same request on the same data gives the same bytes: every query orders by a unique key,
  values are formatted one fixed way, and nothing records "now" (XLSX: fixed document
  properties and zip entry times; Parquet: no timestamps in its metadata).
- Typed for the tools finance uses: accounting dates are dates, times are instants in the
  export's zone (Parquet ``date32`` and ``timestamp(tz)``; XLSX real dates and date-times with
  the zone said in header notes and a ``notes`` sheet, money in its currency's decimals, a
  frozen, filtered header, sized columns).
- Each money movement is one row (refunds: a credit note with its Stripe refunds), each line is
  filed under the tier that priced it, and test merchants (``is_test``) are left out unless
  the request includes them.
- Finance opens these files in Excel, and merchants choose their own names: every cell goes
  through one cell writer (`Cell`), for every export kind, over HTTP and ``billing export``
  alike. A text cell is only ever text: in CSV one that starts with ``=``, ``+``, ``-``, ``@``,
  a tab or a carriage return gets a leading ``'`` (OWASP's advice against CSV injection); in
  XLSX it is a typed string cell (never a formula, URL or number) and such a cell is also
  marked quote-prefixed, as Excel marks what a person types after ``'``. Numbers stay numbers.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import os
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any, BinaryIO, Final
from uuid import UUID

from plans.money import CURRENCY_EXPONENTS, minor_to_major, plain_decimal
from plans.periods import zone
from service.db import engine as db_engine
from service.finance import revenue, xlsx
from service.finance.export_kinds import ExportFormat, ExportKind

BATCH_ROWS: Final = 2_000
MONEY_SCALE: Final = max(CURRENCY_EXPONENTS.values())
"""Parquet decimal scale: the largest minor unit we know (KWD, 3), so every currency fits."""
QUANTITY_SCALE: Final = 6


MEDIA_TYPES: Final = {
    ExportFormat.CSV: "text/csv",  # Litestar adds "; charset=utf-8" to text types
    ExportFormat.PARQUET: "application/vnd.apache.parquet",
    ExportFormat.XLSX: "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


@dataclass(frozen=True, slots=True)
class Column:
    """An output column. ``money`` reads ``<name>_minor`` and the row's ``currency`` and writes
    two columns: ``<name>`` (major units) and ``<name>_minor``."""

    name: str
    kind: str  # text | int | money | timestamp | date | decimal | bool

    @property
    def output_names(self) -> list[str]:
        return [self.name, f"{self.name}_minor"] if self.kind == "money" else [self.name]


@dataclass(frozen=True, slots=True)
class ExportRequest:
    kind: ExportKind
    first_day: date
    last_day: date
    """Inclusive: the export covers whole days ``first_day`` … ``last_day`` in ``timezone``."""
    timezone: str = "Asia/Shanghai"
    merchant_id: UUID | None = None
    format: ExportFormat = ExportFormat.CSV
    has_bom: bool = False
    includes_test: bool = False
    """Test merchants' rows too (merchants on a test clock: ``is_test``); left out by default."""

    @property
    def start(self) -> datetime:
        return datetime.combine(self.first_day, time(), tzinfo=zone(self.timezone))

    @property
    def end(self) -> datetime:
        return datetime.combine(
            self.last_day + timedelta(days=1), time(), tzinfo=zone(self.timezone)
        )

    @property
    def filename(self) -> str:
        merchant = f"-{self.merchant_id}" if self.merchant_id else ""
        return (
            f"{self.kind.value}-{self.first_day.isoformat()}-{self.last_day.isoformat()}"
            f"{merchant}.{self.format.value}"
        )

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES[self.format]

    def check(self) -> None:
        if self.last_day < self.first_day:
            raise ValueError("'to' is before 'from'")
        zone(self.timezone)  # raises on an unknown zone


# -- the rows of each export -------------------------------------------------------------------
# Each query takes $1 start, $2 end (the accounting instants), $3 the timezone, $4 a merchant or
# NULL, $5 whether test merchants' rows are wanted; it orders by a unique key, so the same data
# always comes out in the same order. They are raw SQL because they join and aggregate across
# the finance tables in one pass.

_TIER = "coalesce(pv.tier, i.plan_code)"
_PLAN_JOIN = "LEFT JOIN plan_versions pv ON pv.code = i.plan_code AND pv.version = i.plan_version"
_IS_TEST = f"({revenue.TEST_MERCHANT_SQL}) AS is_test"
_WANTED = f"($4::uuid IS NULL OR m.id = $4) AND ($5 OR NOT {revenue.TEST_MERCHANT_SQL})"
"""The export's merchant (or all) and, unless asked for, no test merchants (``m``)."""

_INVOICES_SQL = f"""
SELECT (i.finalized_at AT TIME ZONE $3)::date AS accounting_date,
       i.number, i.merchant_id::text AS merchant_id, m.name AS merchant_name, {_IS_TEST},
       {_TIER} AS tier,
       i.plan_code || ' v' || i.plan_version AS plan, i.kind, i.period_start, i.period_end,
       i.status, i.currency, i.subtotal_minor, i.discounts_minor, i.credits_minor, i.tax_rate,
       i.tax_minor, i.total_minor, i.amount_due_minor, i.amount_paid_minor,
       coalesce(r.refunded, 0)::bigint AS amount_refunded_minor, i.amount_credited_minor,
       i.finalized_at, i.paid_at, i.voided_at, i.marked_uncollectible_at,
       coalesce(i.stripe_invoice_id, '') AS stripe_invoice_id, i.id::text AS invoice_id
FROM invoices i
JOIN merchants m ON m.id = i.merchant_id
{_PLAN_JOIN}
LEFT JOIN LATERAL (
    SELECT sum(f.amount_minor) AS refunded FROM refunds f
    WHERE f.merchant_id = i.merchant_id AND f.invoice_id = i.id
      AND f.status NOT IN ('failed', 'canceled')
) r ON true
WHERE i.finalized_at >= $1 AND i.finalized_at < $2 AND {_WANTED}
ORDER BY i.finalized_at, i.merchant_id, i.number
"""

# Each line is filed under the tier of the plan that priced it, as of its service period
# (`revenue.LINE_PLAN_JOIN`), not the invoice's: an upgrade's credit of basic's unused time is
# basic revenue even on the invoice the advanced plan made.
_INVOICE_LINES_SQL = f"""
SELECT (i.finalized_at AT TIME ZONE $3)::date AS accounting_date,
       i.number AS invoice_number, i.status AS invoice_status,
       i.merchant_id::text AS merchant_id, m.name AS merchant_name, {_IS_TEST},
       {revenue.LINE_TIER_SQL} AS tier,
       l.position, l.kind, {revenue.CHARGE_TYPE_SQL} AS charge_type, l.charge_code,
       l.description, l.quantity, l.unit_price, l.rate, l.amount_minor, l.currency,
       l.period_start, l.period_end, i.id::text AS invoice_id
FROM invoices i
JOIN invoice_lines l ON l.merchant_id = i.merchant_id AND l.invoice_id = i.id
JOIN merchants m ON m.id = i.merchant_id
{_PLAN_JOIN}
{revenue.LINE_PLAN_JOIN}
WHERE i.finalized_at >= $1 AND i.finalized_at < $2 AND {_WANTED}
ORDER BY i.finalized_at, i.merchant_id, i.number, l.position
"""

# Payments are the rows the Stripe webhook handlers record (``payments``), one per paid invoice.
_PAYMENTS_SQL = f"""
SELECT (p.paid_at AT TIME ZONE $3)::date AS accounting_date,
       p.merchant_id::text AS merchant_id, m.name AS merchant_name, {_IS_TEST},
       i.number AS invoice_number, p.amount_minor, p.currency, p.paid_at,
       p.stripe_invoice_id, coalesce(p.stripe_payment_intent_id, '') AS stripe_payment_intent_id,
       coalesce(p.stripe_charge_id, '') AS stripe_charge_id, p.id::text AS payment_id
FROM payments p
JOIN merchants m ON m.id = p.merchant_id
JOIN invoices i ON i.merchant_id = p.merchant_id AND i.id = p.invoice_id
WHERE p.paid_at >= $1 AND p.paid_at < $2 AND {_WANTED}
ORDER BY p.paid_at, p.id
"""

# One row per money movement, never two for one: a credit note with the Stripe refund(s) that
# paid it back (both ids on one row), or a Stripe refund no credit note covers. ``credited`` is
# what the credit note took off the invoice; ``refunded`` the money that left through Stripe
# (refunds not failed or canceled), so summing ``refunded`` gives what went back to merchants.
_REFUNDS_SQL = f"""
SELECT * FROM (
    SELECT (n.created_at AT TIME ZONE $3)::date AS accounting_date,
           n.number AS credit_note, n.merchant_id::text AS merchant_id,
           m.name AS merchant_name, {_IS_TEST}, i.number AS invoice_number,
           CASE WHEN n.kind = 'post_payment' THEN 'refund' ELSE 'credit' END AS movement,
           n.reason, n.currency, n.amount_minor AS credited_minor,
           coalesce(f.refunded, 0)::bigint AS refunded_minor, n.refund_status,
           n.created_at, coalesce(n.stripe_credit_note_id, '') AS stripe_credit_note_id,
           coalesce(f.refund_ids, n.stripe_refund_id, '') AS stripe_refund_id,
           n.id::text AS credit_note_id
    FROM credit_notes n
    JOIN merchants m ON m.id = n.merchant_id
    JOIN invoices i ON i.merchant_id = n.merchant_id AND i.id = n.invoice_id
    LEFT JOIN LATERAL (
        SELECT sum(r.amount_minor) FILTER (WHERE r.status NOT IN ('failed', 'canceled'))
                   AS refunded,
               string_agg(r.stripe_refund_id, ' ' ORDER BY r.created_at, r.stripe_refund_id)
                   AS refund_ids
        FROM refunds r WHERE r.merchant_id = n.merchant_id AND r.credit_note_id = n.id
    ) f ON true
    WHERE n.created_at >= $1 AND n.created_at < $2 AND {_WANTED}
    UNION ALL
    SELECT (r.created_at AT TIME ZONE $3)::date, '', r.merchant_id::text, m.name,
           {revenue.TEST_MERCHANT_SQL}, i.number, 'refund', r.origin, r.currency, 0,
           CASE WHEN r.status IN ('failed', 'canceled') THEN 0 ELSE r.amount_minor END,
           CASE WHEN r.status = 'succeeded' THEN 'refunded'
                WHEN r.status IN ('failed', 'canceled') THEN 'failed' ELSE 'pending' END,
           r.created_at, '', r.stripe_refund_id, ''
    FROM refunds r
    JOIN merchants m ON m.id = r.merchant_id
    JOIN invoices i ON i.merchant_id = r.merchant_id AND i.id = r.invoice_id
    WHERE r.credit_note_id IS NULL AND r.created_at >= $1 AND r.created_at < $2 AND {_WANTED}
) movements
ORDER BY created_at, credit_note_id, stripe_refund_id
"""

_USAGE_SQL = f"""
SELECT (a.period_start AT TIME ZONE $3)::date AS accounting_date,
       a.merchant_id::text AS merchant_id, m.name AS merchant_name,
       {_IS_TEST},
       coalesce(pv.tier, p.plan_code, '') AS tier, a.subscription_id::text AS subscription_id,
       a.period_start, p.period_end, s.currency,
       coalesce(sum(a.event_count) FILTER (WHERE a.metric = 'orders'), 0)::bigint
           AS order_events,
       coalesce(sum(a.quantity) FILTER (WHERE a.metric = 'orders'), 0) AS orders,
       coalesce(sum(a.gmv_minor) FILTER (WHERE a.metric = 'orders'), 0)::bigint AS gmv_minor,
       coalesce(sum(a.quantity) FILTER (WHERE a.metric = 'support_hours'), 0) AS hours
FROM usage_aggregates a
JOIN merchants m ON m.id = a.merchant_id
JOIN subscriptions s ON s.merchant_id = a.merchant_id AND s.id = a.subscription_id
LEFT JOIN subscription_periods p ON p.merchant_id = a.merchant_id
    AND p.subscription_id = a.subscription_id AND p.period_start = a.period_start
LEFT JOIN plan_versions pv ON pv.code = p.plan_code AND pv.version = p.plan_version
WHERE a.period_start >= $1 AND a.period_start < $2 AND {_WANTED}
GROUP BY a.merchant_id, m.name, m.test_clock_id, pv.tier, p.plan_code, a.subscription_id,
         a.period_start, p.period_end, s.currency
ORDER BY a.period_start, a.merchant_id, a.subscription_id
"""


# Every movement of the merchants' credit balances: what invoices carried in, and where it
# went (credit notes on open invoices, lines of later invoices, refunds), in order.
_CREDIT_BALANCE_SQL = f"""
SELECT (mv.created_at AT TIME ZONE $3)::date AS accounting_date,
       mv.merchant_id::text AS merchant_id, m.name AS merchant_name, {_IS_TEST}, mv.seq,
       mv.kind, mv.amount_minor, mv.balance_after_minor, mv.currency,
       coalesce(i.number, '') AS invoice_number, coalesce(n.number, '') AS credit_note_number,
       mv.memo, mv.created_at, mv.id::text AS movement_id
FROM credit_balance_movements mv
JOIN merchants m ON m.id = mv.merchant_id
LEFT JOIN invoices i ON i.merchant_id = mv.merchant_id AND i.id = mv.invoice_id
LEFT JOIN credit_notes n ON n.merchant_id = mv.merchant_id AND n.id = mv.credit_note_id
WHERE mv.created_at >= $1 AND mv.created_at < $2 AND {_WANTED}
ORDER BY mv.created_at, mv.merchant_id, mv.seq
"""


# Every mismatch of the reconciliation runs whose range starts in the export's range, with the
# merchant it concerns where one is known (a test merchant's only when asked for).
_RECONCILIATION_SQL = f"""
SELECT r.first_day, r.last_day, r.created_at,
       r.id::text AS run_id, mm.ordinality AS position, mm.item->>'object' AS object,
       mm.item->>'kind' AS kind, mm.item->>'reference' AS reference,
       coalesce(mm.item->>'merchant_id', '') AS merchant_id,
       coalesce(m.name, mm.item->>'merchant_name', '') AS merchant_name,
       coalesce({revenue.TEST_MERCHANT_SQL}, false) AS is_test,
       mm.item->>'detail' AS detail, coalesce(mm.item->>'ours', '') AS ours,
       coalesce(mm.item->>'theirs', '') AS theirs
FROM finance_reconciliations r
CROSS JOIN LATERAL jsonb_array_elements(r.document->'mismatches') WITH ORDINALITY
    AS mm(item, ordinality)
LEFT JOIN merchants m ON m.id = nullif(mm.item->>'merchant_id', '')::uuid
WHERE r.first_day >= ($1 AT TIME ZONE $3)::date AND r.first_day < ($2 AT TIME ZONE $3)::date
  AND ($4::uuid IS NULL OR r.document->'merchant_ids' ? $4::text)
  AND ($5 OR m.id IS NULL OR NOT {revenue.TEST_MERCHANT_SQL})
ORDER BY r.created_at, r.id, mm.ordinality
"""


@dataclass(frozen=True, slots=True)
class ExportSpec:
    columns: tuple[Column, ...]
    sql: str | None = None
    """The query; ``None`` for the exports computed in Python (MRR)."""


def _cols(spec: str) -> tuple[Column, ...]:
    return tuple(Column(*item.split(":")) for item in spec.split())


SPECS: Final[dict[ExportKind, ExportSpec]] = {
    ExportKind.INVOICES: ExportSpec(
        _cols(
            "accounting_date:date number:text merchant_id:text merchant_name:text is_test:bool "
            "tier:text plan:text kind:text period_start:timestamp period_end:timestamp "
            "status:text currency:text subtotal:money discounts:money credits:money "
            "tax_rate:decimal tax:money total:money amount_due:money amount_paid:money "
            "amount_refunded:money amount_credited:money finalized_at:timestamp "
            "paid_at:timestamp voided_at:timestamp marked_uncollectible_at:timestamp "
            "stripe_invoice_id:text invoice_id:text"
        ),
        _INVOICES_SQL,
    ),
    ExportKind.INVOICE_LINES: ExportSpec(
        _cols(
            "accounting_date:date invoice_number:text invoice_status:text merchant_id:text "
            "merchant_name:text is_test:bool tier:text position:int kind:text charge_type:text "
            "charge_code:text description:text quantity:decimal unit_price:decimal "
            "rate:decimal amount:money currency:text period_start:timestamp "
            "period_end:timestamp invoice_id:text"
        ),
        _INVOICE_LINES_SQL,
    ),
    ExportKind.PAYMENTS: ExportSpec(
        _cols(
            "accounting_date:date merchant_id:text merchant_name:text is_test:bool "
            "invoice_number:text amount:money currency:text paid_at:timestamp "
            "stripe_invoice_id:text stripe_payment_intent_id:text stripe_charge_id:text "
            "payment_id:text"
        ),
        _PAYMENTS_SQL,
    ),
    ExportKind.REFUNDS: ExportSpec(
        _cols(
            "accounting_date:date credit_note:text merchant_id:text merchant_name:text "
            "is_test:bool invoice_number:text movement:text reason:text currency:text "
            "credited:money refunded:money refund_status:text created_at:timestamp "
            "stripe_credit_note_id:text stripe_refund_id:text credit_note_id:text"
        ),
        _REFUNDS_SQL,
    ),
    ExportKind.USAGE: ExportSpec(
        _cols(
            "accounting_date:date merchant_id:text merchant_name:text is_test:bool tier:text "
            "subscription_id:text period_start:timestamp period_end:timestamp currency:text "
            "order_events:int orders:decimal gmv:money hours:decimal"
        ),
        _USAGE_SQL,
    ),
    ExportKind.REVENUE: ExportSpec(
        _cols("month:text tier:text charge_type:text currency:text amount:money lines:int"),
        revenue.REVENUE_SQL,
    ),
    ExportKind.RECONCILIATION: ExportSpec(
        _cols(
            "first_day:date last_day:date created_at:timestamp run_id:text position:int "
            "object:text kind:text reference:text merchant_id:text merchant_name:text "
            "is_test:bool detail:text ours:text theirs:text"
        ),
        _RECONCILIATION_SQL,
    ),
    ExportKind.CREDIT_BALANCE: ExportSpec(
        _cols(
            "accounting_date:date merchant_id:text merchant_name:text is_test:bool seq:int "
            "kind:text amount:money balance_after:money currency:text invoice_number:text "
            "credit_note_number:text memo:text created_at:timestamp movement_id:text"
        ),
        _CREDIT_BALANCE_SQL,
    ),
    ExportKind.MRR: ExportSpec(
        _cols(
            "month:text tier:text currency:text mrr:money subscriptions:int new:money "
            "expansion:money contraction:money churn:money reactivation:money"
        )
    ),
}


def header(kind: ExportKind) -> list[str]:
    return [name for column in SPECS[kind].columns for name in column.output_names]


FORMULA_TRIGGERS: Final = xlsx.FORMULA_TRIGGERS
is_formula_like: Final = xlsx.is_formula_like


class Cell(StrEnum):
    """How an output cell is written: the one cell writer of every export (`cell_kinds`)."""

    TEXT = "text"
    INT = "int"
    NUMBER = "number"
    MONEY = "money"
    """A major-unit amount: a number shown with its currency's decimals."""
    TIMESTAMP = "timestamp"
    DATE = "date"
    BOOL = "bool"


def cell_kinds(kind: ExportKind) -> list[Cell]:
    """The cell kind of every output column, in order (a money column is two: its major-unit
    number and its ``_minor`` integer)."""
    kinds: list[Cell] = []
    for column in SPECS[kind].columns:
        if column.kind == "money":
            kinds += [Cell.MONEY, Cell.INT]
        elif column.kind == "int":
            kinds.append(Cell.INT)
        elif column.kind == "decimal":
            kinds.append(Cell.NUMBER)
        elif column.kind == "timestamp":
            kinds.append(Cell.TIMESTAMP)
        elif column.kind == "date":
            kinds.append(Cell.DATE)
        elif column.kind == "bool":
            kinds.append(Cell.BOOL)
        else:
            kinds.append(Cell.TEXT)
    return kinds


def csv_cell(kind: Cell, value: Any) -> str:
    """A cell as CSV text; text that a spreadsheet would run as a formula gets a leading '."""
    if value is None:
        return ""
    if kind is Cell.TEXT:
        text = str(value)
        return "'" + text if is_formula_like(text) else text
    if isinstance(value, date):  # datetimes too: ISO 8601, with the offset
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def _convert(columns: Sequence[Column], record: Any, tz: Any) -> list[Any]:
    """A database row as output values: Decimal major + int minor for money, aware datetimes
    in the export's zone, Decimal quantities, text ('' for none)."""
    out: list[Any] = []
    for column in columns:
        if column.kind == "money":
            minor = record[f"{column.name}_minor"]
            out.append(minor_to_major(minor, record["currency"]))
            out.append(minor)
        elif column.kind == "timestamp":
            value = record[column.name]
            out.append(value.astimezone(tz) if value is not None else None)
        elif column.kind == "text":
            value = record[column.name]
            out.append("" if value is None else str(value))
        elif column.kind == "decimal" and isinstance(record[column.name], Decimal):
            out.append(plain_decimal(record[column.name]))  # 20000, never PostgreSQL's 2E+4
        else:
            out.append(record[column.name])
    return out


async def count_rows(request: ExportRequest) -> int | None:
    """How many rows the export will have (for a progress bar); ``None`` if not known ahead."""
    spec = SPECS[request.kind]
    if spec.sql is None:
        return None
    return int(
        await db_engine.current().pool.fetchval(
            f"SELECT count(*) FROM ({spec.sql}) export", *_parameters(request)
        )
    )


def _parameters(request: ExportRequest) -> tuple[Any, ...]:
    """$1 … $5 of every export query."""
    return (
        request.start,
        request.end,
        request.timezone,
        request.merchant_id,
        request.includes_test,
    )


async def row_batches(request: ExportRequest) -> AsyncIterator[list[list[Any]]]:
    """The export's rows in batches of ``BATCH_ROWS``, read through a server-side cursor."""
    spec = SPECS[request.kind]
    tz = zone(request.timezone)
    if spec.sql is None:
        rows = [_convert(spec.columns, record, tz) for record in await _mrr_records(request)]
        for offset in range(0, len(rows), BATCH_ROWS):
            yield rows[offset : offset + BATCH_ROWS]
        return
    # One snapshot for the whole export: rows committed meanwhile neither appear nor shift the
    # batches, so the bytes only depend on the data as of the start.
    async with (
        db_engine.current().pool.acquire() as connection,
        connection.transaction(isolation="repeatable_read", readonly=True),
    ):
        cursor = await connection.cursor(spec.sql, *_parameters(request))
        while True:
            records = await cursor.fetch(BATCH_ROWS)
            if not records:
                break
            yield [_convert(spec.columns, record, tz) for record in records]


async def _mrr_records(request: ExportRequest) -> list[dict[str, Any]]:
    """MRR per tier at each month's end, with the month's movement, from ``revenue``: one
    row per month and tier (small: months × tiers)."""
    book = await revenue.load_book(request.merchant_id, includes_test=request.includes_test)
    moves = await book.movements(request.start, request.end, request.timezone)
    records: dict[tuple[str, str, str], dict[str, Any]] = {}

    def record(month: str, tier: str, currency: str) -> dict[str, Any]:
        return records.setdefault(
            (month, tier, currency),
            {"month": month, "tier": tier, "currency": currency, "mrr_minor": 0,
             "subscriptions": 0, **{f"{kind}_minor": 0 for kind in revenue.MOVEMENT_KINDS}},
        )  # fmt: skip

    for year, month in revenue.month_bounds(request.first_day, request.last_day):
        label = f"{year:04d}-{month:02d}"
        month_end = min(
            revenue.month_start(year + month // 12, month % 12 + 1, request.timezone),
            request.end,
        )
        for tier in await book.mrr_at(month_end - timedelta(microseconds=1)):
            row = record(label, tier.tier, tier.currency)
            row["mrr_minor"], row["subscriptions"] = tier.mrr_minor, tier.subscriptions
    for move in moves:
        record(move.month, move.tier, move.currency)[f"{move.kind}_minor"] += move.amount_minor
    return [
        records[key]
        for key in sorted(records, key=lambda k: (k[0], revenue._tier_rank(k[1]), k[1], k[2]))
    ]


# -- writing -----------------------------------------------------------------------------------


async def stream(
    request: ExportRequest, *, on_rows: Callable[[int], None] | None = None
) -> AsyncIterator[bytes]:
    """The export file, chunk by chunk (a chunk per batch of rows)."""
    request.check()
    writer = {
        ExportFormat.CSV: _csv_chunks,
        ExportFormat.PARQUET: _parquet_chunks,
        ExportFormat.XLSX: _xlsx_chunks,
    }[request.format]
    async for chunk in writer(request, on_rows or (lambda _: None)):
        if chunk:
            yield chunk


async def _csv_chunks(
    request: ExportRequest, on_rows: Callable[[int], None]
) -> AsyncIterator[bytes]:
    # Written straight to UTF-8 bytes: a text buffer would hold non-Latin text (merchant names
    # in Chinese) at four bytes a character.
    buffer = io.BytesIO()
    text = io.TextIOWrapper(buffer, encoding="utf-8", newline="", write_through=True)
    writer = csv.writer(text, lineterminator="\r\n")
    if request.has_bom:
        text.write("\ufeff")
    writer.writerow(header(request.kind))
    kinds = cell_kinds(request.kind)

    def take() -> bytes:
        chunk = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return chunk

    # The header goes out with the first rows: the first chunk exists only once the query ran.
    async for batch in row_batches(request):
        writer.writerows(
            [csv_cell(kind, value) for kind, value in zip(kinds, row, strict=True)] for row in batch
        )
        yield take()
        on_rows(len(batch))
    yield take()  # the header alone, when there are no rows


def _arrow_schema(request: ExportRequest) -> Any:
    import pyarrow as pa

    fields = []
    for column in SPECS[request.kind].columns:
        if column.kind == "money":
            fields.append(pa.field(column.name, pa.decimal128(19 + MONEY_SCALE, MONEY_SCALE)))
            fields.append(pa.field(f"{column.name}_minor", pa.int64()))
        elif column.kind == "int":
            fields.append(pa.field(column.name, pa.int64()))
        elif column.kind == "timestamp":
            # An instant (stored in UTC) with the export's zone as its zone.
            fields.append(pa.field(column.name, pa.timestamp("us", tz=request.timezone)))
        elif column.kind == "date":
            fields.append(pa.field(column.name, pa.date32()))
        elif column.kind == "bool":
            fields.append(pa.field(column.name, pa.bool_()))
        elif column.kind == "decimal":
            fields.append(pa.field(column.name, pa.decimal128(38, QUANTITY_SCALE)))
        else:
            fields.append(pa.field(column.name, pa.string()))
    return pa.schema(fields)


def _arrow_value(value: Any, arrow_type: Any) -> Any:
    import pyarrow as pa

    if value is not None and pa.types.is_decimal(arrow_type):
        return Decimal(value).quantize(Decimal(1).scaleb(-arrow_type.scale))
    return value


async def _parquet_chunks(
    request: ExportRequest, on_rows: Callable[[int], None]
) -> AsyncIterator[bytes]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _arrow_schema(request)
    sink = xlsx.Drain()
    writer = pq.ParquetWriter(sink, schema, compression="zstd", write_statistics=True)
    try:
        async for batch in row_batches(request):
            arrays = [
                pa.array([_arrow_value(row[i], field.type) for row in batch], type=field.type)
                for i, field in enumerate(schema)
            ]
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
            on_rows(len(batch))
            yield sink.drain()
    finally:
        writer.close()
    yield sink.drain()


XLSX_ROWS_PER_SHEET: int = xlsx.EXCEL_MAX_ROWS - 1
"""Data rows in one XLSX sheet: Excel's limit less the header. Longer exports continue on
``<kind> (2)``, ``<kind> (3)``, ... (a test lowers it to see the split)."""

_XLSX_KINDS: Final = {
    Cell.TEXT: xlsx.TEXT,
    Cell.INT: xlsx.INT,
    Cell.NUMBER: xlsx.NUMBER,
    Cell.MONEY: xlsx.MONEY,
    Cell.TIMESTAMP: xlsx.TIMESTAMP,
    Cell.DATE: xlsx.DATE,
    Cell.BOOL: xlsx.BOOL,
}


def _xlsx_spec(request: ExportRequest) -> xlsx.SheetSpec:
    """The export's sheets: every cell written by its kind (`Cell`): money with its currency's
    decimals, dates and times as real Excel dates in the export's zone (a note on their header
    cells and the ``notes`` sheet say which), integers as integers, text as text only. The
    header row is frozen and filtered; widths fit the header and the first rows."""
    names = header(request.kind)
    kinds = cell_kinds(request.kind)
    zone_note = (
        f"Local time in {request.timezone} (Excel keeps no time zone; the CSV gives each "
        "time with its UTC offset, Parquet as an instant in this zone)"
    )
    header_notes = {
        column: zone_note if kind is Cell.TIMESTAMP else f"A date in {request.timezone}"
        for column, kind in enumerate(kinds)
        if kind in (Cell.TIMESTAMP, Cell.DATE)
    }
    notes = [
        ("export", request.kind.value),
        ("from", request.first_day.isoformat()),
        ("to", request.last_day.isoformat() + " (inclusive)"),
        ("time zone", request.timezone),
        ("dates and times", zone_note),
        ("merchant", str(request.merchant_id) if request.merchant_id else "all"),
        (
            "test data",
            "included (is_test = true: merchants on a test clock)"
            if request.includes_test
            else "left out (merchants on a test clock); include_test=true adds them",
        ),
        (
            "amounts",
            "in major units with the currency's decimals; <name>_minor is the same amount "
            "in integer minor units (fen)",
        ),
    ]
    return xlsx.SheetSpec(
        name=request.kind.value,
        header=names,
        kinds=[_XLSX_KINDS[kind] for kind in kinds],
        header_notes=header_notes,
        currency_column=names.index("currency") if "currency" in names else None,
        money_places=dict(CURRENCY_EXPONENTS),
        notes=notes,
        rows_per_sheet=XLSX_ROWS_PER_SHEET,
        width_sample_rows=BATCH_ROWS,
    )


async def _xlsx_chunks(
    request: ExportRequest, on_rows: Callable[[int], None]
) -> AsyncIterator[bytes]:
    """The workbook as it is written: each batch of rows becomes sheet XML, deflated into the
    zip and sent on (no temporary file). Rows are encoded off the event loop."""
    book = xlsx.StreamedWorkbook(_xlsx_spec(request))
    async for batch in row_batches(request):
        yield await asyncio.to_thread(book.write, batch)
        on_rows(len(batch))
    yield await asyncio.to_thread(book.finish)


def _open_binary(path: str, mode: str) -> BinaryIO:
    return open(path, mode)  # the caller closes it


async def primed_stream(request: ExportRequest) -> AsyncIterator[bytes]:
    """`stream`, with its first chunk already made: a failure at the start (a query that
    fails) is raised here, before any response header is sent, and answered as a problem."""
    chunks = stream(request)
    first = await anext(chunks, b"")

    async def rest() -> AsyncIterator[bytes]:
        if first:
            yield first
        async for chunk in chunks:
            yield chunk

    return rest()


async def export_to_file(
    request: ExportRequest,
    path: str | os.PathLike[str],
    *,
    on_rows: Callable[[int], None] | None = None,
) -> int:
    """Write the export to ``path`` (through a temporary file beside it, renamed when whole);
    returns the bytes written."""
    target = os.fspath(path)
    partial = f"{target}.partial"
    written = 0
    out = await asyncio.to_thread(_open_binary, partial, "wb")
    try:
        async for chunk in stream(request, on_rows=on_rows):
            await asyncio.to_thread(out.write, chunk)
            written += len(chunk)
        out.close()
        os.replace(partial, target)
    finally:
        out.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)
    return written
