"""Push: telling agents to sync now, and pinging them.

- :mod:`.notifier` — the :class:`DeviceNotifier` interface that services call after commit
  (``notify_changed``) and the ping endpoint uses (``ping``), plus two small implementations.
- :mod:`.hub` — :class:`PushHub`, the server's notifier: local streams plus transports.
- :mod:`.streams` — the ``GET /agent/v1/device/stream`` connections this process holds.
- :mod:`.transport` — the transport interface; :mod:`.postgres` (``LISTEN/NOTIFY`` between
  server processes), :mod:`.mqtt` (a broker), :mod:`.fake` (tests).
- :mod:`.presence` — ``online`` / ``offline`` in the database as connections come and go.
- :mod:`.leases` — each process's stream ownership lease, and the sweep that sets offline the
  devices of a process that died.
- :mod:`.config` — ``FLEETCONFIG_PUSH_*`` settings.
"""

from fleetconfig.server.push.hub import PushHub
from fleetconfig.server.push.notifier import DeviceNotifier

__all__ = ["DeviceNotifier", "PushHub"]
