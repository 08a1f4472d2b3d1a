"""E-invoices: one invoice as Peppol BIS Billing 3.0 UBL or as a PDF, one or a ZIP of many.

``source`` reads invoices, lines and parties; ``ubl`` and ``pdf`` render one invoice;
``documents`` puts them together for the API; ``zipstream`` writes a ZIP entry by entry.
See ``docs/einvoicing.md``.
"""
