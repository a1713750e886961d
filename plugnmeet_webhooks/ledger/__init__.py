"""The ledger: sessions, AI usage, files and attendance derived from stored events."""
