"""ServiceAccount identities of the local stack's processes: a token from the TokenRequest API
(bound to a Node when asked, as a DaemonSet pod's projected token is) in a 0600 file, and a
kubeconfig that reads it."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from forensic_checkpoint.errors import ClusterError
from forensic_checkpoint.k8s.client import ApiClient
from forensic_checkpoint_dev.cluster import access


@dataclass
class Identity:
    """A ServiceAccount's token file and a kubeconfig that uses it."""

    user: str
    token_file: Path
    kubeconfig: Path


def mint(
    api: ApiClient,
    *,
    server: str,
    ca_file: Path,
    namespace: str,
    account: str,
    token_file: Path,
    node: str | None = None,
    timeout: float = 30.0,
) -> Identity:
    """A day-long token of ``namespace/account`` (bound to ``node``'s Node object if given) in
    ``token_file``, and ``<token_file>.kubeconfig`` beside it. Retried for ``timeout`` seconds:
    the ServiceAccount may just have been applied."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            token = access.request_token(
                api, namespace, account, expiration_seconds=86400, node=node
            )
            break
        except ClusterError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    token_file.parent.mkdir(parents=True, exist_ok=True)
    write_private(token_file, token)
    kubeconfig = token_file.with_suffix(".kubeconfig")
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "dev", "cluster": {"server": server, "certificate-authority": str(ca_file)}}
        ],
        "users": [{"name": "sa", "user": {"tokenFile": str(token_file)}}],
        "contexts": [{"name": "dev", "context": {"cluster": "dev", "user": "sa"}}],
        "current-context": "dev",
    }
    write_private(kubeconfig, json.dumps(config, indent=2))
    return Identity(f"system:serviceaccount:{namespace}:{account}", token_file, kubeconfig)


def write_private(path: Path, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value)
