"""The response bodies of groups, as ``/openapi.json`` describes them (everglades)."""

from fleetconfig.server.devices.wire import Group, GroupList

__all__ = ["Group", "GroupList"]
