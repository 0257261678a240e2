"""Idempotency keys on the Platform API's POSTs (extension, see docs/idempotency.md)."""
