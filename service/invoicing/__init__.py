"""Invoicing: drafting a period's invoice from its usage and terms, period close, invoices."""
