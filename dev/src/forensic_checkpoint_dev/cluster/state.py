"""The cluster directory: the state file ``down`` reads, and the clean-up of a failed start."""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path
from typing import Any

from forensic_checkpoint.errors import ConfigError

STATE_FILE = "state.json"


def port_clash(logs: Path) -> bool:
    for log in logs.glob("*.log"):
        with contextlib.suppress(OSError):
            if "address already in use" in log.read_text(errors="replace"):
                return True
    return False


def clear(directory: Path) -> None:
    """Remove what a failed start wrote, and nothing else a user keeps in the directory."""
    for name in ("pki", "etcd", "logs", "nodes", "clients"):
        shutil.rmtree(directory / name, ignore_errors=True)
    for name in (
        STATE_FILE,
        "admin.kubeconfig",
        "kube-controller-manager.kubeconfig",
        "kube-scheduler.kubeconfig",
    ):
        (directory / name).unlink(missing_ok=True)


def read_state(directory: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((directory / STATE_FILE).read_text()))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"no dev cluster state in {directory}: {exc}") from exc
