"""Billing: the billing file, invoices priced from the ledger, their documents and storage."""
