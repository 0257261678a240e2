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
"""
