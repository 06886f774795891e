"""The agent's data settings from the chart's ConfigMap (``agent-values.yaml``): the CRIU
configuration it keeps on the node, and the evidence export section."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from forensic_checkpoint.agent.criu_config import (
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
        export = raw.get("export")
        if export is not None and not isinstance(export, dict):
            raise ConfigError(f"agent values {path}: export is not a mapping")
        return cls(CriuConfigSettings.from_values(raw.get("criuConfig")), export)


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
