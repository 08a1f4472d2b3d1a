"""Deterministic demo data: a distributor, a partner, customers and billed months."""
