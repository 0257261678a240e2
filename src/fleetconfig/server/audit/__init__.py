"""The audit trail: every change, who made it and from where, before and after; append-only,
written by the change's own transaction; read through ``/beta/audit_events``."""
