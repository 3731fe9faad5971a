"""Subscriptions: signup, the lifecycle state machine, plan changes with proration, test clocks."""
