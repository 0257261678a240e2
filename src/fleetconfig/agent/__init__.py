"""The fleetconfig agent: the program that runs on each robot.

It pulls deployments from the server, writes their config files atomically, reports status
back, and serves the on-device API. It depends only on the standard library and the small
set of packages in the project's base dependencies; it never imports ``fleetconfig.server``.

Modules, one job each:

- ``paths``        filepath rules (allowed roots, normalisation) and the ``--root`` mapping
- ``fsutil``       durable low-level file operations (fsync, new files, backups)
- ``journal``      the persistent record of the file transaction in flight
- ``transaction``  all-or-none changes to a set of files; recovery after a crash
- ``apply``        deployment-level apply rules: write the target, then remove archived files
- ``state``        the pure per-deployment state machine
- ``backoff``      capped exponential backoff with jitter, and the agent's three policies
- ``models``       the records the store returns
- ``events``       on-device event types and their payloads
- ``store``        the agent's SQLite file: deployments, outbox, metadata, content, events
- ``reconcile``    one local pass: from the store's deployments to files, reports and events
- ``http11``       a small, strict HTTP/1.1 codec for asyncio streams
- ``unix_socket``  the API socket: bound with mode 0660, or taken from systemd
- ``device_api``   the on-device API v0.2.1 that the official device SDK talks to
- ``clock``        UTC timestamps
- ``settings``     the agent's settings: command line, environment, ``agent.toml``
- ``keys``         the device key pair, written with safe modes from the start
- ``activation``   the one-time exchange of an activation token for a device identity
- ``tokens``       device-signed assertions and the session token they buy, refreshed early
- ``server_link``  the agent API client (an interface, the httpx implementation)
- ``push_link``    "sync now" from the server: the built-in stream or MQTT, reconnecting
- ``sync``         one sync at a time: pull, fetch content, reconcile, flush the outbox
- ``daemon``       wires everything together and shuts down gracefully
- ``logs``         structured log lines on stdout
"""
