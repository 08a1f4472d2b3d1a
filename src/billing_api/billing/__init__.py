"""The monthly billing run: rating, VAT, row hashes, invoices and their price lines."""
