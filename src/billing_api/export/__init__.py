"""The export path: streaming queries and XML/JSON writers for the Billing API."""
