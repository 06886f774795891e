"""What the plugin's subcommands share: the namespace to work in, and reading one
ForensicCheckpoint."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import ValidationError

from forensic_checkpoint.api.forensiccheckpoint import ForensicCheckpoint
from forensic_checkpoint.errors import ClusterError
from forensic_checkpoint.k8s.checkpoints import ForensicCheckpoints
from forensic_checkpoint.k8s.client import ApiClient


def namespace(given: str | None, kubeconfig: str | None) -> str:
    """The namespace flag, else the kubeconfig context's, else ``default`` (kubectl's rule)."""
    if given:
        return given
    import yaml

    path = kubeconfig or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
    path = path or str(Path.home() / ".kube" / "config")
    try:
        config = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except OSError:
        return "default"
    current = config.get("current-context")
    for ctx in config.get("contexts") or []:
        if ctx.get("name") == current:
            return str((ctx.get("context") or {}).get("namespace") or "default")
    return "default"


def get_checkpoint(api: ApiClient, namespace: str, name: str) -> ForensicCheckpoint:
    try:
        return ForensicCheckpoints(api).read(namespace, name)
    except ValidationError as exc:
        raise ClusterError(f"ForensicCheckpoint {namespace}/{name} does not parse: {exc}") from exc
