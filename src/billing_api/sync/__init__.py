"""Keeping partners in sync: cursors over billing runs (and, later, webhooks)."""
