"""Kefu Billing pricing domain."""
