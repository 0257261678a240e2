"""The tables. Wire shapes live in each resource's ``schemas.py``; these are storage only.

Every tenant-owned row carries ``workspace_id`` and every repository query filters on it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from fleetconfig.protocol import DeviceStatus
from fleetconfig.server.kit.clock import utcnow
from fleetconfig.server.kit.db import Base, UTCDateTime


class Workspace(Base):
    __tablename__ = "workspaces"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ServerSecret(Base):
    """Key material shared by every server process (token signing keys)."""

    __tablename__ = "server_secrets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    scopes: Mapped[list[str]] = mapped_column(JSON)
    # sha256 of the secret; the secret itself is never stored.
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    secret_prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class ConfigType(Base):
    __tablename__ = "config_types"
    __table_args__ = (
        UniqueConstraint("workspace_id", "slug"),
        UniqueConstraint("workspace_id", "name"),
        Index("ix_config_types_ws_created", "workspace_id", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"))
    name: Mapped[str] = mapped_column(String(48))
    slug: Mapped[str] = mapped_column(String(48))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class GitCommit(Base):
    __tablename__ = "git_commits"
    __table_args__ = (
        UniqueConstraint("workspace_id", "sha"),
        Index("ix_git_commits_ws_created", "workspace_id", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"))
    sha: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text)
    origin: Mapped[str] = mapped_column(Text)
    repository_owner: Mapped[str] = mapped_column(String(255))
    repository_name: Mapped[str] = mapped_column(String(255))
    repository_type: Mapped[str] = mapped_column(String(16))
    repository_url: Mapped[str] = mapped_column(Text)
    commit_url: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ConfigSchema(Base):
    __tablename__ = "config_schemas"
    __table_args__ = (
        # Get-or-create by content: one row per (type, digest, slots and instance format),
        # enforced under races.
        UniqueConstraint("workspace_id", "config_type_id", "digest", "slots_key"),
        Index("ix_config_schemas_ws_created", "workspace_id", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"))
    config_type_id: Mapped[str] = mapped_column(ForeignKey("config_types.id"), index=True)
    digest: Mapped[str] = mapped_column(String(80))
    # The slot versions before everglades show as the schema's one path: the ``default``
    # slot's, else the first required one's (API_VERSIONS.md section 7).
    instance_filepath: Mapped[str] = mapped_column(String(4096))
    # Where instances are written: ``[{key, name, filepath, required, description}]``, in
    # order; immutable, like the schema. Small and always read with the schema, hence JSON.
    instance_slots: Mapped[list[dict[str, object]]] = mapped_column(JSON)
    instance_format: Mapped[str] = mapped_column(String(16))
    # sha256 of the instance format and the slots: part of the schema's identity.
    slots_key: Mapped[str] = mapped_column(String(64))
    language: Mapped[str] = mapped_column(String(16))
    format: Mapped[str] = mapped_column(String(16))
    git_commit_id: Mapped[str | None] = mapped_column(ForeignKey("git_commits.id"), nullable=True)
    schema_filepaths: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SchemaDocument(Base):
    __tablename__ = "schema_documents"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    config_schema_id: Mapped[str] = mapped_column(ForeignKey("config_schemas.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(1024))
    data: Mapped[str] = mapped_column(Text)


class ConfigInstance(Base):
    __tablename__ = "config_instances"
    __table_args__ = (Index("ix_config_instances_ws_created", "workspace_id", "created_at", "id"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"))
    config_schema_id: Mapped[str] = mapped_column(ForeignKey("config_schemas.id"), index=True)
    config_type_id: Mapped[str] = mapped_column(ForeignKey("config_types.id"), index=True)
    # The slot of its schema this instance fills; ``filepath`` is that slot's path.
    slot_key: Mapped[str] = mapped_column(String(128), default="default")
    filepath: Mapped[str] = mapped_column(String(4096))
    format: Mapped[str] = mapped_column(String(16))
    # The exact text the caller sent: returned and written to devices byte for byte.
    data: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Release(Base):
    __tablename__ = "releases"
    __table_args__ = (
        UniqueConstraint("workspace_id", "version"),
        Index("ix_releases_ws_created", "workspace_id", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"))
    version: Mapped[str] = mapped_column(String(255))
    git_commit_id: Mapped[str | None] = mapped_column(ForeignKey("git_commits.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ReleaseConfigSchema(Base):
    __tablename__ = "release_config_schemas"

    release_id: Mapped[str] = mapped_column(ForeignKey("releases.id"), primary_key=True)
    config_schema_id: Mapped[str] = mapped_column(
        ForeignKey("config_schemas.id"), primary_key=True, index=True
    )
    position: Mapped[int] = mapped_column(Integer)


class Device(Base):
    __tablename__ = "devices"
    __table_args__ = (
        UniqueConstraint("workspace_id", "name"),
        Index("ix_devices_ws_created", "workspace_id", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"))
    name: Mapped[str] = mapped_column(String(48))
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    group_id: Mapped[str | None] = mapped_column(ForeignKey("groups.id"), nullable=True, index=True)
    # An archived device shows status ``archived`` (everglades; ``inactive`` before).
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    status: Mapped[str] = mapped_column(String(16), default=DeviceStatus.INACTIVE)
    agent_version: Mapped[str | None] = mapped_column(String(64), nullable=True)
    last_connected_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_disconnected_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Set by activation (the agent API): the device's public key and its fingerprint.
    public_key_pem: Mapped[str | None] = mapped_column(Text, nullable=True)
    key_fingerprint: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    # Session tokens carry this id; a new activation starts a new session (old ones die).
    session_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # The server process holding the device's push stream (a ``stream_leases`` id), while
    # it is online through one: if that process dies, its lease lapses and the device is
    # set offline by the others.
    stream_holder_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Group(Base):
    """A node of the workspace's tree of device groups (everglades)."""

    __tablename__ = "groups"
    __table_args__ = (
        UniqueConstraint("workspace_id", "name"),
        Index("ix_groups_ws_created", "workspace_id", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"))
    name: Mapped[str] = mapped_column(String(255))
    parent_id: Mapped[str | None] = mapped_column(
        ForeignKey("groups.id"), nullable=True, index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ProvisioningToken(Base):
    """One row per issued provisioning token (rainier), so that each can be used once."""

    __tablename__ = "provisioning_tokens"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"), index=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # The device it was issued for (device-bound: reprovisioning), else the device it
    # provisioned, once used.
    device_id: Mapped[str | None] = mapped_column(ForeignKey("devices.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class StreamLease(Base):
    """One row per running server process that holds push streams, renewed while it lives."""

    __tablename__ = "stream_leases"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ActivationToken(Base):
    """One row per issued activation token, so that each can be used once."""

    __tablename__ = "activation_tokens"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"), index=True)
    allow_reactivation: Mapped[bool] = mapped_column(Boolean, default=False)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class DeviceTokenUse(Base):
    """``jti`` of device-signed JWTs already exchanged: a replay is refused."""

    __tablename__ = "device_token_uses"

    jti: Mapped[str] = mapped_column(String(128), primary_key=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class Deployment(Base):
    __tablename__ = "deployments"
    __table_args__ = (
        # The database itself guarantees at most one current deployment per device.
        Index(
            "uq_deployments_one_target_per_device",
            "device_id",
            unique=True,
            sqlite_where=text("target_status = 'deployed'"),
            postgresql_where=text("target_status = 'deployed'"),
        ),
        Index("ix_deployments_ws_created", "workspace_id", "created_at", "id"),
        Index("ix_deployments_device_release", "device_id", "release_id"),
        Index("ix_deployments_release_target", "release_id", "target_status"),
        # A device's latest deployment (the fleet view): the newest targeted_at per device.
        Index("ix_deployments_device_targeted", "device_id", "targeted_at"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"))
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"))
    release_id: Mapped[str] = mapped_column(ForeignKey("releases.id"), index=True)
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("deployments.id"), nullable=True)
    description: Mapped[str] = mapped_column(Text, default="")
    target_status: Mapped[str] = mapped_column(String(16))
    activity_status: Mapped[str] = mapped_column(String(16))
    error_status: Mapped[str] = mapped_column(String(16), default="none")
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    # The agent's detail of its error (fleetconfig extension): the failing device path, how
    # many attempts were made, when the next one is due; and when the current error began.
    error_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    error_attempts: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error_next_retry_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    error_since: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Files of this deployment the agent found changed or missing on the robot, one entry per
    # path ({filepath, change, detected_at, restored_at}); modified_at is the newest detection.
    file_changes: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)
    modified_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # What the robot's own software said of this config (fleetconfig extension): "confirmed"
    # or "rejected" (with a reason), through the on-device API and the agent; None: nothing.
    health_status: Mapped[str | None] = mapped_column(String(16), nullable=True)
    health_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    health_reported_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # Start of the drift window: creation, or the last restage.
    staged_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # When this deployment became its device's target (drifts of others are measured by it);
    # everglades shows it as ``queued_at``.
    targeted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    deployed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class DeploymentConfigInstance(Base):
    __tablename__ = "deployment_config_instances"

    deployment_id: Mapped[str] = mapped_column(ForeignKey("deployments.id"), primary_key=True)
    config_instance_id: Mapped[str] = mapped_column(
        ForeignKey("config_instances.id"), primary_key=True, index=True
    )
    position: Mapped[int] = mapped_column(Integer)


class IdempotencyKey(Base):
    """One ``Idempotency-Key`` of one API key: claimed before its request runs, then holding
    the answer to replay (``status_code`` is null while the first request is in progress)."""

    __tablename__ = "idempotency_keys"

    api_key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"))
    # sha256 of the method, path, query, API version and body of the first request.
    fingerprint: Mapped[str] = mapped_column(String(64))
    method: Mapped[str] = mapped_column(String(16))
    path: Mapped[str] = mapped_column(Text)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    response_headers: Mapped[list[list[str]] | None] = mapped_column(JSON, nullable=True)
    response_body: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class AuditEvent(Base):
    """One change in the audit trail: append-only, written in the change's own transaction
    (:mod:`fleetconfig.server.audit.sink`). No foreign keys: the trail outlives the objects it
    names. ``seq`` orders it (ids are random); the indexes serve the per-object views, and
    are few: each costs every change (a workspace's trail reads ``seq`` backwards)."""

    __tablename__ = "audit_events"
    __table_args__ = (
        # Most events belong to no rollout.
        Index(
            "ix_audit_events_rollout_id",
            "rollout_id",
            sqlite_where=text("rollout_id IS NOT NULL"),
            postgresql_where=text("rollout_id IS NOT NULL"),
        ),
    )

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    workspace_id: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor_kind: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[str] = mapped_column(String(64))
    actor_name: Mapped[str] = mapped_column(String(128))
    request_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    address: Mapped[str | None] = mapped_column(String(64), nullable=True)
    operation: Mapped[str] = mapped_column(String(64))
    object_type: Mapped[str] = mapped_column(String(32))
    object_id: Mapped[str] = mapped_column(String(64), index=True)
    cause: Mapped[str | None] = mapped_column(String(32), nullable=True)
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), nullable=True)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True), nullable=True)
    # The related ids the trail is queried by, as columns; all of them in ``related``.
    device_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    release_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    rollout_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    related: Mapped[dict[str, str]] = mapped_column(JSON)


class Rollout(Base):
    """A release deployed wave by wave (see :mod:`fleetconfig.server.rollouts`). All the
    engine's state is here and in the two tables below, so any server process can drive it
    after a restart."""

    __tablename__ = "rollouts"
    __table_args__ = (Index("ix_rollouts_ws_created", "workspace_id", "created_at", "id"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    workspace_id: Mapped[str] = mapped_column(ForeignKey("workspaces.id"))
    name: Mapped[str] = mapped_column(String(255))
    release_id: Mapped[str] = mapped_column(ForeignKey("releases.id"), index=True)
    # One set of config instances for every device, and per-device sets that replace it.
    config_instance_ids: Mapped[list[str]] = mapped_column(JSON)
    device_config_instance_ids: Mapped[dict[str, list[str]]] = mapped_column(JSON)
    # The target: groups (with their subgroups) and devices named one by one.
    group_ids: Mapped[list[str]] = mapped_column(JSON)
    device_ids: Mapped[list[str]] = mapped_column(JSON)
    join_policy: Mapped[str] = mapped_column(String(16))
    # The waves as given (counts and "N%") and the gate every wave must pass.
    waves: Mapped[list[int | str]] = mapped_column(JSON)
    gate: Mapped[dict[str, Any]] = mapped_column(JSON)
    on_failure: Mapped[str] = mapped_column(String(16))
    rollback: Mapped[bool] = mapped_column(Boolean, default=False)
    # running | paused | aborted | finished; the wave under way (numbered from 1).
    status: Mapped[str] = mapped_column(String(16), index=True)
    current_wave: Mapped[int] = mapped_column(Integer, default=0)
    # Why it is paused or aborted: {reason, message, device_ids, wave}.
    stop_reason: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class RolloutWave(Base):
    """One wave of a rollout: its size, when it ran, and its gate's last verdict."""

    __tablename__ = "rollout_waves"

    rollout_id: Mapped[str] = mapped_column(ForeignKey("rollouts.id"), primary_key=True)
    number: Mapped[int] = mapped_column(Integer, primary_key=True)
    spec: Mapped[int | str] = mapped_column(JSON)
    # pending | running | passed | failed | advanced (by hand) | aborted
    status: Mapped[str] = mapped_column(String(16))
    # When its gate window began (the wave's start, or the last resume).
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    gate_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    verdict: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class RolloutDevice(Base):
    """A device of a rollout: its wave, the deployment the rollout made, and the one it had
    before (for a rollback)."""

    __tablename__ = "rollout_devices"
    __table_args__ = (Index("ix_rollout_devices_wave", "rollout_id", "wave"),)

    rollout_id: Mapped[str] = mapped_column(ForeignKey("rollouts.id"), primary_key=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id"), primary_key=True)
    # The device's id while the rollout is not over, else NULL: unique, so a device is in one
    # unfinished rollout at a time whatever the race.
    active_device_id: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    wave: Mapped[int] = mapped_column(Integer)
    joined_late: Mapped[bool] = mapped_column(Boolean, default=False)
    # waiting | started | refused | rolled_back | not_rolled_back
    state: Mapped[str] = mapped_column(String(16))
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    deployment_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    previous_deployment_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RolloutDriver(Base):
    """The lease of the one server process driving rollouts (one row)."""

    __tablename__ = "rollout_driver"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    holder_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
