"""Metered usage: ingesting events exactly once, per-period aggregates, summaries."""
