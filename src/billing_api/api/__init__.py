"""The Billing API: the authenticated router factory (deps) and problem details (problems)."""
