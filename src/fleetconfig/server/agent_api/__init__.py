"""The agent API (``/agent/v1``): what ``fleetconfig-agent`` calls. Shapes follow Miru's agent
API v0.4, minus provisioning tokens (activation replaces them).

Every request carries ``Miru-Version: v0.4`` (missing: 400 ``missing_api_version``; another
value: 400 ``unsupported_api_version``). Errors use the Platform API's envelope
``{"error": {"code", "message", "params"}}``; every 401 has ``params.reason`` and means "get a
new token" (``missing_token``, ``invalid_token``, ``invalid_signature``, ``invalid_lifetime``,
``expired_token``, ``token_used``, ``token_replayed``, ``unknown_key``, ``session_ended``).
Timestamps are RFC 3339 UTC with ``Z``.

Identity
--------
``POST /devices/activate`` — ``Authorization: Bearer <activation token>`` (from the Platform
API's ``POST /beta/devices/{id}/activation_token``), body
``{"public_key_pem": str, "agent_version": str, "name": str?}``. The key is an RSA public key
(PEM ``PUBLIC KEY``, at least 2048 bits). Answers the ``Device`` (below) with status
``activating`` and a new ``session_id``. Errors: 401 (token bad, expired, or already used —
each token activates once), 409 ``device_already_activated`` (the token was not issued with
``allow_reactivation``), 409 ``public_key_in_use``, 409 ``device_name_taken``, 422 (bad key,
``agent_version`` not 1..64 characters). A reactivation ends every earlier session: their
tokens get 401 ``session_ended`` and their open streams are closed.

``POST /devices/token`` — ``Authorization: Bearer <device assertion>``: a JWT signed by the
device's private key with ``alg`` RS512 and ``kid`` = lowercase hex SHA-256 of the DER
SubjectPublicKeyInfo of its public key; claims ``jti`` (unique per request, 1..128
characters), ``iat``, ``exp`` (``exp - iat`` ≤ 120 s; 30 s of clock skew is tolerated). No
body. Answers ``{"token": str, "expires_at": str}``: the session token, valid
``session_token_ttl_seconds`` (24 h by default); refresh about 15 minutes before
``expires_at``, and at once on any 401. The device is ``online`` from here on.

Everything below takes ``Authorization: Bearer <session token>`` and concerns only the calling
device: another device's objects are 404.

The device
----------
``GET /device`` and ``PATCH /devices/{device_id}`` (body ``{"agent_version": str?}``) answer
the ``Device``: ``{"object": "device", "id", "name", "status"
(inactive|activating|online|offline), "agent_version", "last_connected_at",
"last_disconnected_at", "created_at", "updated_at", "session_id"}`` (nullable fields present
as null).

Deployments
-----------
``GET /deployments`` — ``offset`` (default 0), ``limit`` (1..100, default 10; clamped),
``activity_status`` (one or more of drifted|staged|queued|deployed|removing|archived, joined by
``,`` or ``|`` or repeated), ``expand`` (``config_instances``, ``release``,
``release.git_commit``, ``total_count``). Newest first. Answers
``{"object": "list", "limit", "offset", "has_more", "data": [Deployment], "total_count"?}``.
A device sees the deployments that were made its target at some point (never ones that
were only staged).

``GET /deployments/{id}`` and ``PATCH /deployments/{id}`` (``expand`` as above without
``total_count``) answer a ``Deployment``: ``{"object": "deployment", "id", "description",
"status", "activity_status", "error_status", "target_status", "device_id", "release_id",
"created_at", "updated_at"}`` plus, when expanded, ``"release": Release`` and
``"config_instances": [ConfigInstance]`` (in the release's order). The PATCH body is the
device's report: ``{"activity_status"?, "error_status"? (none|retrying|failed),
"error_message"? (fleetconfig extension: why it is retrying or failed), "deployed_at"?,
"archived_at"?}``; ``target_status`` is refused (400). Reports are idempotent and
forward-only: one that would move the deployment backwards is ignored (200, the deployment
unchanged), never applied in part. Report ``deployed`` when the files are written, and
``archived`` when a deployment whose target is ``archived`` has had its files removed.

``Release``: ``{"object": "release", "id", "version", "git_commit_id", "created_at",
"updated_at"}`` plus ``"git_commit": GitCommit | null`` when expanded.
``GitCommit``: ``{"object": "git_commit", "id", "sha", "message", "repository_owner",
"repository_name", "repository_type", "repository_url", "commit_url", "created_at"}``.
``ConfigInstance``: ``{"object": "config_instance", "id", "config_type_name", "filepath",
"created_at", "config_schema_id", "config_type_id"}``.

``GET /releases/{id}`` (``expand=git_commit``), ``GET /git_commits/{id}``, and
``GET /config_instances/{id}/content`` (``disposition=inline|attachment``): the raw bytes, with
the format's ``Content-Type`` and ``Content-Disposition: inline; filename="<basename>"``. Content
never changes: cache it forever.

Push
----
``GET /push`` — how to listen: ``{"object": "push_settings", "transport": "sse"|"mqtt",
"stream_path": "/agent/v1/device/stream", "heartbeat_seconds": float, "mqtt_url": str|null}``.
The built-in stream always works; ``transport`` is ``mqtt`` when the server has a broker.

``GET /device/stream`` — server-sent events (``sync``, ``ping``, heartbeat comments, ``close``);
see :mod:`fleetconfig.server.agent_api.stream`. ``POST /devices/{device_id}/pong`` with
``{"message_id": str}`` answers a ping; answers ``{"message_id", "timestamp"}``.
MQTT topics are described in :mod:`fleetconfig.server.push.mqtt`.
"""
