"""Outgoing webhooks: billing events told to the platform's endpoints, signed, in order."""
