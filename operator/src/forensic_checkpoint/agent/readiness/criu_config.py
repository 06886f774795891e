"""Install and keep the node's CRIU configuration file, never touching one the agent did not write.

Why a file: the kubelet's checkpoint call has no CRIU options, and neither containerd's CRI nor
CRI-O passes ``--tcp-established`` or a ``ghost-limit``. Both runtimes run ``runc checkpoint``,
and runc tells CRIU to read ``/etc/criu/runc.conf`` (unless the container's ``org.criu.config``
annotation names another file). containerd's runc shim and CRI-O therefore share this one file;
crun reads ``/etc/criu/crun.conf`` when that exists and falls back to ``runc.conf`` otherwise.
CRIU also reads ``/etc/criu/default.conf`` first. Options in these files override what the
runtime sent over RPC, which is why the agent writes only dump options that cannot break an
archive (never ``images-dir``, ``work-dir``, ``log-file``).

Ownership: the agent's file starts with :data:`HEADER` and a SHA-256 of the option lines. A file
without the header is foreign; a file with the header whose checksum no longer matches was
edited by someone. Both are reported as a conflict and left exactly as they are.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from forensic_checkpoint.domain.readiness import CriuConfigObservation
from forensic_checkpoint.errors import ConfigError

MIB = 1 << 20
#: CRIU's built-in ghost-limit (criu/include/cr_options.h DEFAULT_GHOST_LIMIT).
CRIU_DEFAULT_GHOST_LIMIT = MIB
DEFAULT_GHOST_LIMIT = 256 * MIB
MAX_GHOST_LIMIT = 16 * 1024 * MIB

RUNC_CONF = Path("etc/criu/runc.conf")
CRUN_CONF = Path("etc/criu/crun.conf")
DEFAULT_CONF = Path("etc/criu/default.conf")

HEADER = "# Written by the forensic-checkpoint agent, which rewrites or removes it. Do not edit."
_CHECKSUM_PREFIX = "# forensic-checkpoint-sha256: "

#: Options that redirect CRIU's output: in a config file they override the runtime's RPC
#: settings, and the runtime then finds no images (checkpointctl#213 for images-dir).
DANGEROUS_OPTIONS = frozenset({"images-dir", "work-dir", "log-file", "output", "D", "W", "o"})

#: The only options the agent ever writes. ``/etc/criu`` is read by a root CRIU for every
#: container on the node, so an ``action-script``, ``exec-cmd`` or ``lib`` (plugins) line there
#: runs code as root in the host: :func:`render` refuses anything not listed here, whatever
#: produced the settings (docs/security-model.md).
ALLOWED_OPTIONS = frozenset({"tcp-established", "skip-in-flight", "file-locks", "ghost-limit"})

#: Options that make CRIU run programs or load code; flagged when a foreign file sets them.
CODE_RUNNING_OPTIONS = frozenset({"action-script", "exec-cmd", "lib", "L"})


class ConfigState(StrEnum):
    """What is on the node after :func:`reconcile_criu_config`."""

    ABSENT = "Absent"  # disabled and no file
    MANAGED = "Managed"  # the agent's own file, with the wanted content
    FOREIGN = "Foreign"  # disabled; someone else's file, left alone
    CONFLICT = "Conflict"  # enabled (or removing), but the file is not ours as written
    ERROR = "Error"  # the file could not be read or written


class ConfigAction(StrEnum):
    CREATED = "Created"
    UPDATED = "Updated"
    UNCHANGED = "Unchanged"
    REMOVED = "Removed"
    NONE = "None"


@dataclass(frozen=True, slots=True)
class CriuConfigSettings:
    """The chart's ``criuConfig`` values. Off by default: writing node files is opt-in."""

    enabled: bool = False
    tcp_established: bool = True
    skip_in_flight: bool = True
    file_locks: bool = True
    ghost_limit_bytes: int = DEFAULT_GHOST_LIMIT

    def __post_init__(self) -> None:
        if not CRIU_DEFAULT_GHOST_LIMIT <= self.ghost_limit_bytes <= MAX_GHOST_LIMIT:
            raise ConfigError(
                f"criuConfig.ghostLimitBytes must be between {CRIU_DEFAULT_GHOST_LIMIT} and "
                f"{MAX_GHOST_LIMIT}, got {self.ghost_limit_bytes}"
            )

    @classmethod
    def from_values(cls, values: Mapping[str, Any] | None) -> CriuConfigSettings:
        """From the chart's camelCase ``criuConfig`` values; unknown keys are an error."""
        values = dict(values or {})
        keys = {
            "enabled": "enabled",
            "tcpEstablished": "tcp_established",
            "skipInFlight": "skip_in_flight",
            "fileLocks": "file_locks",
            "ghostLimitBytes": "ghost_limit_bytes",
        }
        unknown = sorted(set(values) - set(keys))
        code = [k for k in unknown if _kebab(k) in CODE_RUNNING_OPTIONS]
        if code:
            raise ConfigError(
                f"criuConfig: refusing CRIU option(s) {', '.join(code)}: they make CRIU run "
                "code as root on the node; the agent writes only "
                f"{', '.join(sorted(ALLOWED_OPTIONS))}"
            )
        if unknown:
            raise ConfigError(f"criuConfig: unknown setting(s) {', '.join(unknown)}")
        kwargs: dict[str, Any] = {}
        for key, attr in keys.items():
            if key not in values:
                continue
            value = values[key]
            wanted = int if attr == "ghost_limit_bytes" else bool
            if type(value) is not wanted:
                raise ConfigError(f"criuConfig.{key} must be a {wanted.__name__}, got {value!r}")
            kwargs[attr] = value
        return cls(**kwargs)

    def option_lines(self) -> list[str]:
        """The CRIU config statements, one per line, without the leading ``--``."""
        lines = []
        if self.tcp_established:
            lines.append("tcp-established")
        if self.skip_in_flight:
            lines.append("skip-in-flight")
        if self.file_locks:
            lines.append("file-locks")
        if self.ghost_limit_bytes != CRIU_DEFAULT_GHOST_LIMIT:
            lines.append(f"ghost-limit {self.ghost_limit_bytes}")
        return lines


@dataclass(frozen=True, slots=True)
class CriuConfigResult:
    """The outcome, as the agent reports it in its ForensicNode status."""

    state: ConfigState
    action: ConfigAction
    path: str
    message: str
    #: The options CRIU will read from that file (name -> value, "" for flags); empty if none.
    options: dict[str, str] = field(default_factory=dict)
    #: Other things that change what CRIU does on this node (crun.conf, default.conf, ...).
    notes: tuple[str, ...] = ()

    @property
    def tcp_established(self) -> bool:
        return "tcp-established" in self.options

    @property
    def ghost_limit_bytes(self) -> int:
        return parse_size(self.options.get("ghost-limit", "")) or CRIU_DEFAULT_GHOST_LIMIT

    def observation(self) -> CriuConfigObservation:
        """The readiness probe's view of this result (``domain.readiness``)."""
        return CriuConfigObservation(
            state=self.state.value,
            tcp_established=self.tcp_established,
            ghost_limit_bytes=self.ghost_limit_bytes,
            message=self.message,
            notes=self.notes,
        )


def render(settings: CriuConfigSettings) -> str:
    """The whole file the agent writes for ``settings``: header, checksum, options.

    Raises :class:`ConfigError` naming any option outside :data:`ALLOWED_OPTIONS`.
    """
    check_allowed(settings.option_lines())
    body = "".join(f"{line}\n" for line in settings.option_lines())
    return f"{HEADER}\n{_CHECKSUM_PREFIX}{_digest(body)}\n{body}"


def check_allowed(lines: list[str]) -> None:
    """Refuse option lines the agent must never write (see :data:`ALLOWED_OPTIONS`)."""
    names = [line.split()[0].removeprefix("--") for line in lines if line.split()]
    refused = sorted({name for name in names if name not in ALLOWED_OPTIONS})
    if refused:
        raise ConfigError(
            f"criuConfig: refusing to write CRIU option(s) {', '.join(refused)}: the agent "
            f"writes only {', '.join(sorted(ALLOWED_OPTIONS))}"
        )


def parse_options(text: str) -> dict[str, str]:
    """Options as CRIU reads a config file: one statement per line, ``#`` starts a comment."""
    options: dict[str, str] = {}
    for raw in text.splitlines():
        words = raw.split("#", 1)[0].split()
        if words:
            options[words[0].removeprefix("--")] = " ".join(words[1:])
    return options


def parse_size(value: str) -> int:
    """CRIU's size syntax: bytes, or a number with K, M or G (criu/config.c parse_size)."""
    value = value.strip()
    digits = "".join(c for c in value if c.isdigit())
    if not digits:
        return 0
    factor = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    for suffix, multiplier in factor.items():
        if suffix in value:
            return int(digits) * multiplier
    return int(digits)


def reconcile_criu_config(settings: CriuConfigSettings, root: Path = Path("/")) -> CriuConfigResult:
    """Bring ``<root>/etc/criu/runc.conf`` to ``settings``; idempotent, never clobbers.

    ``root`` is the host filesystem as the agent sees it (a hostPath mount), ``/`` by default.
    """
    path = root / RUNC_CONF
    notes = _notes(root)
    try:
        current = path.read_text() if path.exists() else None
    except OSError as exc:
        return CriuConfigResult(
            ConfigState.ERROR, ConfigAction.NONE, str(path), f"cannot read {path}: {exc}"
        )
    ownership = _ownership(current)
    if current is not None and ownership != "own":
        return _leave_alone(path, current, ownership, settings.enabled, notes)
    if settings.enabled:
        return _install(path, current, render(settings), notes)
    if current is None:
        message = "no CRIU configuration"
        return CriuConfigResult(
            ConfigState.ABSENT, ConfigAction.NONE, str(path), message, {}, notes
        )
    return _attempt(path, notes, path.unlink, ConfigAction.REMOVED, {})


def _leave_alone(
    path: Path, current: str, ownership: str, enabled: bool, notes: tuple[str, ...]
) -> CriuConfigResult:
    """Someone else's file, or ours edited by hand: never changed, whatever the settings."""
    if ownership == "modified":
        return _conflict(path, current, notes, "was edited after the agent wrote it")
    if enabled:
        return _conflict(path, current, notes, "was not written by the agent")
    options = parse_options(current)
    message = f"{path} was not written by the agent; left as it is"
    return CriuConfigResult(
        ConfigState.FOREIGN, ConfigAction.NONE, str(path), message, options, notes + _risks(options)
    )


def _install(
    path: Path, current: str | None, wanted: str, notes: tuple[str, ...]
) -> CriuConfigResult:
    options = parse_options(wanted)
    if current is None:
        create = lambda: _create_exclusive(path, wanted)  # noqa: E731
        return _attempt(path, notes, create, ConfigAction.CREATED, options)
    if current == wanted:
        message = f"{path} is up to date"
        return CriuConfigResult(
            ConfigState.MANAGED, ConfigAction.UNCHANGED, str(path), message, options, notes
        )
    return _attempt(path, notes, lambda: _replace(path, wanted), ConfigAction.UPDATED, options)


def _attempt(
    path: Path,
    notes: tuple[str, ...],
    change: Callable[[], object],
    action: ConfigAction,
    options: dict[str, str],
) -> CriuConfigResult:
    try:
        try:
            change()
        except FileExistsError:
            # Someone created the file between our look and our write: theirs wins.
            current = path.read_text()
            return _conflict(path, current, notes, "appeared while the agent was writing")
    except OSError as exc:
        return CriuConfigResult(
            ConfigState.ERROR,
            ConfigAction.NONE,
            str(path),
            f"cannot change {path}: {exc}",
            {},
            notes,
        )
    if action is ConfigAction.REMOVED:
        return CriuConfigResult(
            ConfigState.ABSENT, action, str(path), f"removed the agent's {path}", {}, notes
        )
    verb = "wrote" if action is ConfigAction.CREATED else "updated"
    return CriuConfigResult(
        ConfigState.MANAGED, action, str(path), f"{verb} {path}", options, notes
    )


def _conflict(path: Path, current: str, notes: tuple[str, ...], why: str) -> CriuConfigResult:
    options = parse_options(current)
    return CriuConfigResult(
        ConfigState.CONFLICT,
        ConfigAction.NONE,
        str(path),
        f"{path} {why}; the agent leaves it alone. Remove it or merge the agent's options "
        "into it by hand",
        options,
        notes + _risks(options),
    )


def _ownership(text: str | None) -> str:
    """``"own"``, ``"modified"`` (our header, wrong checksum) or ``"foreign"``."""
    if text is None:
        return "none"
    lines = text.split("\n", 2)
    if len(lines) < 3 or lines[0] != HEADER or not lines[1].startswith(_CHECKSUM_PREFIX):
        return "foreign"
    recorded = lines[1].removeprefix(_CHECKSUM_PREFIX).strip()
    return "own" if recorded == _digest(lines[2]) else "modified"


def _kebab(key: str) -> str:
    """``actionScript`` or ``action_script`` -> ``action-script``, as CRIU spells options."""
    return "".join(f"-{c.lower()}" if c.isupper() else c for c in key).replace("_", "-").lstrip("-")


def _digest(body: str) -> str:
    return hashlib.sha256(body.encode()).hexdigest()


def _notes(root: Path) -> tuple[str, ...]:
    notes = []
    crun = root / CRUN_CONF
    if crun.exists():
        notes.append(
            f"{crun} exists: crun reads it instead of runc.conf, so the agent's options do not "
            "apply to containers run by crun"
        )
    default = root / DEFAULT_CONF
    if default.exists():
        notes.append(f"{default} exists: CRIU reads it too, before the runtime's file")
    return tuple(notes)


def _risks(options: dict[str, str]) -> tuple[str, ...]:
    risks = [
        f"sets `{name}`, which overrides the runtime's own setting: checkpoints come out "
        "without CRIU images (checkpointctl#213)"
        for name in sorted(options.keys() & DANGEROUS_OPTIONS)
    ]
    risks += [
        f"sets `{name}`, which makes CRIU run code as root on this node for every checkpoint"
        for name in sorted(options.keys() & CODE_RUNNING_OPTIONS)
    ]
    if "tcp-established" not in options:
        risks.append("lacks `tcp-established`: containers with TCP connections fail to dump")
    return tuple(risks)


def _create_exclusive(path: Path, text: str) -> None:
    """Create ``path`` only if it does not exist: link a finished temp file into place."""
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    tmp = _write_temp(path, text)
    try:
        os.link(tmp, path)  # fails with FileExistsError instead of replacing a file
    finally:
        tmp.unlink()


def _replace(path: Path, text: str) -> None:
    tmp = _write_temp(path, text)
    try:
        tmp.replace(path)
    except OSError:
        tmp.unlink()
        raise


def _write_temp(path: Path, text: str) -> Path:
    fd, name = tempfile.mkstemp(prefix=".forensic-checkpoint-", dir=path.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.chmod(0o644)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return tmp
