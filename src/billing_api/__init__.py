"""A cloud distributor's partner Billing API."""

__version__ = "0.1.0"
