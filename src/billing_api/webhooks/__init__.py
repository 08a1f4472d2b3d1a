"""Webhooks: partners' endpoints, the outbox written by billing runs, signed delivery.

    models      the three tables (endpoints, outbox messages, delivery attempts)
    secret_store signing secrets: made, shown once, kept encrypted under the server secret
    signing     Standard Webhooks headers (webhook-id, -timestamp, -signature)
    ssrf        which addresses a delivery may reach (BILLING_API_WEBHOOK_ALLOW)
    endpoints   the Account Administrator's service: add, list, remove, enable
    outbox      events written in the billing run's transaction; resend
    delivery    claiming due messages with a lease and sending them (the one module that
                makes outbound requests)
    worker      the loop run by ``billing-api serve`` and ``billing-api worker``
See docs/webhooks.md.
"""
