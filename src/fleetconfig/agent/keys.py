"""The device's RSA key pair and the identity the agent keeps in its state directory.

- ``device_key.pem``: the private key, mode 0600; ``device_key.pub.pem``: the public key,
  mode 0640. Each file is created with its mode (``os.open`` under a umask that cannot
  widen it), written, fsynced, then renamed into place: it is never readable by others, not
  even for an instant, and is never chmod-ed afterwards.
- ``identity.json``: which server and device this agent was activated for (no secret).

The key signs the short device assertions exchanged for session tokens (``tokens``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

PRIVATE_KEY_FILENAME = "device_key.pem"
PUBLIC_KEY_FILENAME = "device_key.pub.pem"
IDENTITY_FILENAME = "identity.json"
PRIVATE_KEY_MODE = 0o600
PUBLIC_KEY_MODE = 0o640
IDENTITY_MODE = 0o640
STATE_DIR_MODE = 0o750
ASSERTION_ALGORITHM = "RS512"
ASSERTION_LIFETIME_SECONDS = 120

_umask_lock = threading.Lock()


class IdentityError(Exception):
    """The agent has no usable identity (not activated, or its key files are unreadable)."""


@contextlib.contextmanager
def _umask(mask: int) -> Iterator[None]:
    # The umask is process-wide: hold it only while files are created.
    with _umask_lock:
        previous = os.umask(mask)
        try:
            yield
        finally:
            os.umask(previous)


def write_private_file(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` with exactly ``mode`` (never wider), durably, replacing any old file."""
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    # The umask removes every bit the mode does not grant, whatever the caller's umask is.
    with _umask(0o777 & ~mode):
        descriptor = os.open(temp, flags, mode)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    directory = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def ensure_state_dir(state_dir: Path) -> None:
    with _umask(0o777 & ~STATE_DIR_MODE):
        state_dir.mkdir(parents=True, exist_ok=True, mode=STATE_DIR_MODE)


@dataclass(frozen=True)
class DeviceKey:
    private_key: rsa.RSAPrivateKey

    @classmethod
    def generate(cls, bits: int) -> DeviceKey:
        return cls(rsa.generate_private_key(public_exponent=65537, key_size=bits))

    @classmethod
    def load(cls, state_dir: Path) -> DeviceKey:
        path = state_dir / PRIVATE_KEY_FILENAME
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise IdentityError(
                f"no device key at {path}: activate first (fleetconfig-agent activate)"
            ) from None
        except PermissionError:
            raise IdentityError(f"cannot read the device key {path}: permission denied") from None
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except ValueError as error:
            raise IdentityError(f"{path} is not a PEM private key: {error}") from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise IdentityError(f"{path} is not an RSA private key")
        return cls(key)

    def private_pem(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def public_pem(self) -> str:
        pem = self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return pem.decode("ascii")

    @property
    def fingerprint(self) -> str:
        """Lowercase hex SHA-256 of the DER SubjectPublicKeyInfo: the ``kid`` of assertions."""
        der = self.private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return hashlib.sha256(der).hexdigest()

    def save(self, state_dir: Path, *, suffix: str = "") -> None:
        """Write both key files (with ``suffix``: beside the current ones, see ``promote``)."""
        ensure_state_dir(state_dir)
        write_private_file(
            state_dir / (PUBLIC_KEY_FILENAME + suffix), self.public_pem().encode(), PUBLIC_KEY_MODE
        )
        write_private_file(
            state_dir / (PRIVATE_KEY_FILENAME + suffix), self.private_pem(), PRIVATE_KEY_MODE
        )

    @staticmethod
    def promote(state_dir: Path, suffix: str) -> None:
        """Make the keys saved with ``suffix`` the current ones (renames keep their modes)."""
        for name in (PUBLIC_KEY_FILENAME, PRIVATE_KEY_FILENAME):
            os.replace(state_dir / (name + suffix), state_dir / name)
        _fsync_dir(state_dir)

    @staticmethod
    def discard(state_dir: Path, suffix: str) -> None:
        for name in (PUBLIC_KEY_FILENAME, PRIVATE_KEY_FILENAME):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(state_dir / (name + suffix))

    def assertion(self, now: float | None = None) -> str:
        """A fresh device-signed JWT for ``POST /devices/token`` (single use: new ``jti``)."""
        issued = int(time.time() if now is None else now)
        claims = {
            "jti": uuid.uuid4().hex,
            "iat": issued,
            "exp": issued + ASSERTION_LIFETIME_SECONDS,
        }
        return jwt.encode(
            claims,
            self.private_key,
            algorithm=ASSERTION_ALGORITHM,
            headers={"kid": self.fingerprint},
        )


@dataclass(frozen=True)
class Identity:
    """Which server and device the agent belongs to (written at activation)."""

    server_url: str
    device_id: str
    key_fingerprint: str
    activated_at: str

    @classmethod
    def load(cls, state_dir: Path) -> Identity:
        path = state_dir / IDENTITY_FILENAME
        try:
            data: Any = json.loads(path.read_text())
        except FileNotFoundError:
            raise IdentityError(
                f"this agent is not activated ({path} is missing): "
                "run fleetconfig-agent activate --server URL --token TOKEN"
            ) from None
        except (OSError, ValueError) as error:
            raise IdentityError(f"cannot read {path}: {error}") from None
        try:
            return cls(
                server_url=str(data["server_url"]),
                device_id=str(data["device_id"]),
                key_fingerprint=str(data["key_fingerprint"]),
                activated_at=str(data["activated_at"]),
            )
        except (KeyError, TypeError):
            raise IdentityError(f"{path} is incomplete: activate again") from None

    def save(self, state_dir: Path) -> None:
        ensure_state_dir(state_dir)
        body = json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"
        write_private_file(state_dir / IDENTITY_FILENAME, body.encode(), IDENTITY_MODE)
