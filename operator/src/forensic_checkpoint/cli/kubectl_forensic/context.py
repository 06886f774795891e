"""What the plugin's subcommands share: the namespace to work in, and reading one
ForensicCheckpoint."""

from __future__ import annotations

from pydantic import ValidationError

from forensic_checkpoint.api.forensiccheckpoint import ForensicCheckpoint
from forensic_checkpoint.errors import ClusterError
from forensic_checkpoint.k8s.checkpoints import ForensicCheckpoints
from forensic_checkpoint.k8s.client import ApiClient
from forensic_checkpoint.k8s.kubeconfig import resolve


def namespace(given: str | None, kubeconfig: str | None) -> str:
    """The namespace flag, else the kubeconfig context's, else ``default`` (kubectl's rule;
    the plugin's ``main`` has already resolved it with ``--context``)."""
    return resolve(kubeconfig, None, given).namespace


def get_checkpoint(api: ApiClient, namespace: str, name: str) -> ForensicCheckpoint:
    try:
        return ForensicCheckpoints(api).read(namespace, name)
    except ValidationError as exc:
        raise ClusterError(f"ForensicCheckpoint {namespace}/{name} does not parse: {exc}") from exc
