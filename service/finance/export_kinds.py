"""The finance exports there are and the formats they come in: plain names, importable without
the export machinery (``billing --help`` lists them without loading pyarrow or asyncpg)."""

from __future__ import annotations

from enum import StrEnum


class ExportKind(StrEnum):
    INVOICES = "invoices"
    INVOICE_LINES = "invoice_lines"
    PAYMENTS = "payments"
    REFUNDS = "refunds"
    USAGE = "usage"
    REVENUE = "revenue"
    MRR = "mrr"
    RECONCILIATION = "reconciliation"
    CREDIT_BALANCE = "credit_balance"


class ExportFormat(StrEnum):
    CSV = "csv"
    PARQUET = "parquet"
    XLSX = "xlsx"
