"""Vendors, service plans, plan periods, resources, resource rates and rate periods."""
