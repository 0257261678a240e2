"""Who changed what, when and from where: recorded by the write paths in the change's own
transaction, and written there by each sink (the audit trail, the webhook outbox)."""
