"""The agent API (``/agent/v1``): what ``fleetconfig-agent`` calls (Miru agent API v0.4, plus
fleetconfig's lean-1 additions: ``deployments`` push messages and batch status reports).

The protocol reference is ``docs/agent-api.md``; the names both sides share are in
:mod:`fleetconfig.protocol`. Here: ``endpoints`` (HTTP), ``service`` (rules), ``repository``
(SQL), ``stream`` (the push stream), ``push_messages`` (what a push says).
"""
