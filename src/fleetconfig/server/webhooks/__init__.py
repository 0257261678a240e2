"""Signed webhooks: endpoints subscribe to event types; changes are written to an outbox in
their own transaction (:mod:`.outbox`) and delivered from there, signed, retried and in order
per object, by a worker in every server process (:mod:`.worker`). See docs/webhooks.md."""
