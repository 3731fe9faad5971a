"""Finance: revenue figures, exports, reconciliation and the finance page."""
