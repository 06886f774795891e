"""The agent's data settings from the chart's ConfigMap (``agent-values.yaml``): the CRIU
configuration it keeps on the node, the evidence export section and the retention policy."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from forensic_checkpoint.agent.evidence.export_config import ExportConfig
from forensic_checkpoint.agent.readiness.criu_config import (
    ConfigAction,
    CriuConfigSettings,
    reconcile_criu_config,
)
from forensic_checkpoint.domain.readiness import CriuConfigObservation
from forensic_checkpoint.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AgentValues:
    criu_config: CriuConfigSettings = field(default_factory=CriuConfigSettings)
    export: dict[str, Any] | None = None
    retention: dict[str, Any] | None = None

    @classmethod
    def load(cls, path: Path | None) -> AgentValues:
        if path is None:
            return cls()
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"agent values {path}: {exc}") from exc
        if not isinstance(raw, dict):
            raise ConfigError(f"agent values {path}: not a mapping")
        sections = {}
        for name in ("export", "retention"):
            section = raw.get(name)
            if section is not None and not isinstance(section, dict):
                raise ConfigError(f"agent values {path}: {name} is not a mapping")
            sections[name] = section
        return cls(CriuConfigSettings.from_values(raw.get("criuConfig")), **sections)


def export_config(
    values: Mapping[str, Any] | None, *, state_dir: Path, node_name: str
) -> ExportConfig | None:
    """The export settings, ``None`` when there is no ``export`` section (or ``enabled: false``).

    Credentials: ``accessKeyIdFile`` and ``secretAccessKeyFile`` name files (a mounted Secret) read
    here; without them boto3 uses its usual sources (``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``
    in the environment, web identity, ...). Upload state goes to ``<state_dir>/exports``.
    """
    if values is None or not values.get("enabled", True):
        return None
    config = ExportConfig.from_values(values, state_dir=state_dir / "exports", node_name=node_name)
    key_file, secret_file = values.get("accessKeyIdFile"), values.get("secretAccessKeyFile")
    if (key_file is None) != (secret_file is None):
        raise ConfigError("export accessKeyIdFile and secretAccessKeyFile go together")
    if key_file is None or secret_file is None:
        return config
    try:
        key_id = Path(str(key_file)).read_text().strip()
        secret = Path(str(secret_file)).read_text().strip()
    except OSError as exc:
        raise ConfigError(f"export credentials: {exc}") from exc
    return config.with_overrides(access_key_id=key_id, secret_access_key=secret)


def criu_observer(
    settings: CriuConfigSettings, host_root: Path | None
) -> Callable[[], CriuConfigObservation | None]:
    """What each readiness round calls: reconcile ``<host_root>/etc/criu/runc.conf`` with the
    settings (write, keep or remove the agent's own file; never touch a foreign one) and
    report it. Without a host root (the agent cannot see the node's /etc) nothing is done."""

    def observe() -> CriuConfigObservation | None:
        if host_root is None:
            return None
        result = reconcile_criu_config(settings, root=host_root)
        if result.action in (ConfigAction.CREATED, ConfigAction.UPDATED, ConfigAction.REMOVED):
            log.info("CRIU configuration %s: %s", result.path, result.message)
        return result.observation()

    return observe
