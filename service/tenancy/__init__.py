"""Tenants (merchants), API keys and the one place that scopes queries to a merchant."""
