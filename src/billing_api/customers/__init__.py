"""A partner's customers and their subscriptions, per environment."""
