"""age encryption of archives before they leave the node, and decryption for the analyst.

pyrage (bindings to the Rust ``age`` crate) streams: ``encrypt_io``/``decrypt_io`` copy between
Python file objects through 8 KiB buffers, so memory stays flat whatever the archive size. The
output is the standard age v1 format, readable by ``age -d -i key.txt`` as well as by us.

The node only ever holds recipients (public keys): the cluster can write evidence it cannot
read back. Identities (private keys) live with the analysts.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pyrage
from pyrage import ssh, x25519

from forensic_checkpoint.errors import ConfigError, EncryptedArchiveError, ExportError

#: The first bytes of an age file (binary and ASCII-armoured forms).
AGE_MAGIC = b"age-encryption.org/v1\n"
AGE_ARMOR_MAGIC = b"-----BEGIN AGE ENCRYPTED FILE-----"
SUFFIX = ".age"


def is_age_encrypted(head: bytes) -> bool:
    """Whether a file starting with ``head`` (its first 64 bytes suffice) is age-encrypted."""
    return head.startswith(AGE_MAGIC) or head.lstrip().startswith(AGE_ARMOR_MAGIC)


def parse_recipients(lines: Sequence[str]) -> list[Any]:
    """``age1...`` X25519 keys and ``ssh-ed25519``/``ssh-rsa`` public keys; ``#`` comments and
    blank lines are skipped (the format of ``age -R`` recipient files)."""
    recipients: list[Any] = []
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            if line.startswith("age1"):
                recipients.append(x25519.Recipient.from_str(line))
            elif line.startswith("ssh-"):
                recipients.append(ssh.Recipient.from_str(line))
            else:
                raise ConfigError(f"not an age or ssh recipient: {line[:16]}...")
        except pyrage.RecipientError as exc:
            raise ConfigError(f"invalid age recipient {line[:16]}...: {exc}") from exc
    if not recipients:
        raise ConfigError("encryption is enabled but no age recipient is configured")
    return recipients


def load_identities(identity_file: str | os.PathLike[str]) -> list[Any]:
    """The X25519 identities of an ``age-keygen`` file, or one unencrypted ssh private key."""
    path = Path(identity_file)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read identity file {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not an age identity file (not text)") from exc
    try:
        if "PRIVATE KEY-----" in text:
            return [ssh.Identity.from_buffer(text.encode())]
        keys = [
            line.strip() for line in text.splitlines() if line.strip().startswith("AGE-SECRET-KEY-")
        ]
        identities = [x25519.Identity.from_str(key) for key in keys]
    except pyrage.IdentityError as exc:
        raise ConfigError(f"invalid identity in {path}: {exc}") from exc
    if not identities:
        raise ConfigError(f"{path} holds no age identity (AGE-SECRET-KEY-1...)")
    return identities


class _HashingWriter:
    """A write-only file object that counts and hashes what passes through it."""

    def __init__(self, target: IO[bytes]) -> None:
        self._target = target
        self.sha256 = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha256.update(data)
        self.size += len(data)
        return self._target.write(data)

    def flush(self) -> None:
        self._target.flush()


@dataclass(frozen=True)
class EncryptedFile:
    path: Path
    sha256: str  # of the ciphertext, i.e. of the object that will be uploaded
    size_bytes: int


def encrypt_file(
    source: str | os.PathLike[str], destination: str | os.PathLike[str], recipients: list[Any]
) -> EncryptedFile:
    """Encrypt ``source`` to ``destination`` (written to a temporary name, then renamed, so a
    crash never leaves a half-written file under the final name)."""
    dest = Path(destination)
    partial = dest.with_name(dest.name + ".partial")
    try:
        with Path(source).open("rb") as src, partial.open("wb") as out:
            writer = _HashingWriter(out)
            pyrage.encrypt_io(src, writer, recipients)
            out.flush()
            os.fsync(out.fileno())
        partial.replace(dest)
    except (OSError, pyrage.EncryptError) as exc:
        partial.unlink(missing_ok=True)
        raise ExportError(f"cannot encrypt {source}: {exc}") from exc
    return EncryptedFile(dest, writer.sha256.hexdigest(), writer.size)


def decrypt_to_file(
    encrypted: str | os.PathLike[str],
    identity_file: str | os.PathLike[str],
    destination: IO[bytes],
) -> None:
    """Decrypt ``encrypted`` into the open binary file ``destination``."""
    identities = load_identities(identity_file)
    try:
        with Path(encrypted).open("rb") as src:
            pyrage.decrypt_io(src, destination, identities)
    except pyrage.DecryptError as exc:
        raise EncryptedArchiveError(
            f"{encrypted} cannot be decrypted with {identity_file}: {exc}"
        ) from exc
    except OSError as exc:
        raise EncryptedArchiveError(f"cannot read {encrypted}: {exc.strerror}") from exc
    destination.flush()


def decrypt_to_stream(
    encrypted: str | os.PathLike[str], identity_file: str | os.PathLike[str]
) -> IO[bytes]:
    """The plaintext of an age-encrypted archive as a seekable binary file, positioned at 0.

    The plaintext goes to an anonymous temporary file (unlinked at once, gone when closed; set
    ``TMPDIR`` to keep it on encrypted storage): memory stays flat and tar readers can seek.
    The caller closes it. A wrong identity raises :class:`EncryptedArchiveError`.
    """
    out = tempfile.TemporaryFile(prefix="fcp-decrypted-")  # noqa: SIM115 - returned to caller
    try:
        decrypt_to_file(encrypted, identity_file, out)
    except BaseException:
        out.close()
        raise
    out.seek(0)
    return out


@contextmanager
def decrypted_path(
    encrypted: str | os.PathLike[str], identity_file: str | os.PathLike[str]
) -> Iterator[Path]:
    """``with decrypted_path(obj, key) as tar:`` the plaintext as a file, for readers that want a
    path (the analyzer seeks by offset in uncompressed archives). It lives in a private (0700)
    temporary directory, removed on exit; the name drops the ``.age`` suffix."""
    name = Path(encrypted).name.removesuffix(SUFFIX) or "archive"
    with tempfile.TemporaryDirectory(prefix="fcp-decrypted-") as tmp:
        plain = Path(tmp) / name
        with plain.open("wb") as out:
            decrypt_to_file(encrypted, identity_file, out)
        yield plain
