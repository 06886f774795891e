"""``kubectl forensic get-archive NAME -O FILE``: download the archive from the node's agent,
checking its sha256 against the one the agent recorded at capture (status) before the file gets
its final name.

The analyst's own credentials never go to the agent: a node decides where its agent endpoint
points, and a compromised one would keep them. The plugin asks the API server for a short token
of the archive-reader ServiceAccount (which the agents let download, and nothing else) for the
audience of that one node's agent, so the token is worth nothing anywhere else."""

from __future__ import annotations

import argparse
import hashlib
import os
from pathlib import Path

import requests

from forensic_checkpoint.agent_identity import agent_audience
from forensic_checkpoint.api.forensiccheckpoint import ContainerStatus, ForensicCheckpointStatus
from forensic_checkpoint.cli.kubectl_forensic.agent_tls import agent_session
from forensic_checkpoint.cli.kubectl_forensic.context import get_checkpoint, namespace
from forensic_checkpoint.errors import ClusterError, ConfigError
from forensic_checkpoint.k8s.client import ApiClient
from forensic_checkpoint.k8s.tokens import ServiceAccountTokens


def run_plugin(api: ApiClient, args: argparse.Namespace) -> int:
    fcp = get_checkpoint(api, namespace(args.namespace, args.kubeconfig), args.name)
    status = fcp.status or ForensicCheckpointStatus()
    container = pick_container(status, args.container)
    archive = container.archive
    if archive is None or container.archive_deleted:
        raise ConfigError(f"{args.name}/{container.name} has no archive on its node")
    if not status.agent_endpoint:
        raise ConfigError(f"{args.name} names no agent endpoint")
    token = (
        args.token_file.read_text(encoding="utf-8").strip()
        if args.token_file
        else reader_token(api, args.reader, status.node_name)
    )
    url = f"{status.agent_endpoint.rstrip('/')}/v1/captures/{container.capture_key}/archive"
    size = download_verified(
        url,
        token,
        args.output_file,
        archive.sha256,
        agent_session(status.node_name, args.agent_ca_file),
    )
    print(f"{args.output_file}: {size} bytes, sha256 {archive.sha256} (verified)")
    return 0


def pick_container(status: ForensicCheckpointStatus, name: str | None) -> ContainerStatus:
    if name:
        for container in status.containers:
            if container.name == name:
                return container
        raise ConfigError(f"no container {name!r} in this ForensicCheckpoint")
    if len(status.containers) != 1:
        names = ", ".join(c.name for c in status.containers) or "none yet"
        raise ConfigError(f"choose a container with -c ({names})")
    return status.containers[0]


def reader_token(api: ApiClient, reader: str, node_name: str) -> str:
    """A 10-minute token of ``reader`` (``NAMESPACE/NAME``) for ``node_name``'s agent."""
    namespace, _, name = reader.partition("/")
    if not namespace or not name:
        raise ConfigError(f"--reader {reader!r}: give NAMESPACE/NAME")
    try:
        return ServiceAccountTokens(api).request(
            namespace, name, audience=agent_audience(node_name), expiration_seconds=600
        )
    except ClusterError as exc:
        raise ClusterError(
            f"cannot get a token of the archive reader {reader} ({exc.message}); you need the "
            f"Role {name} in {namespace} (create serviceaccounts/token), or --token-file"
        ) from exc


def download_verified(
    url: str, token: str, output: Path, expected_sha256: str, session: requests.Session
) -> int:
    """Stream to ``<output>.part`` while hashing; rename only when the hash is the recorded one.
    ``session`` verifies the peer as the node's agent before the token is sent (:mod:`.agent_tls`).

    Both the agent's header and the status are checked against the bytes: the status hash was
    recorded at capture, before anything could have changed the file on the node.
    """
    from forensic_checkpoint.api.agent import SHA256_HEADER

    part = output.with_name(output.name + ".part")
    digest = hashlib.sha256()
    size = 0
    try:
        with session.get(
            url, headers={"Authorization": f"Bearer {token}"}, stream=True, timeout=(10, 120)
        ) as response:
            if response.status_code != 200:
                raise ClusterError(
                    f"agent answered {response.status_code} for {url}: {response.text[:300]}"
                )
            header = response.headers.get(SHA256_HEADER, "")
            with part.open("wb") as out:
                os.fchmod(out.fileno(), 0o600)  # the archive holds the process's secrets
                for chunk in response.iter_content(1 << 20):
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
    except requests.RequestException as exc:
        part.unlink(missing_ok=True)
        raise ClusterError(f"download from {url} failed: {exc}") from exc
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    actual = digest.hexdigest()
    if actual != expected_sha256 or (header and header != expected_sha256):
        part.unlink(missing_ok=True)
        raise ClusterError(
            f"sha256 mismatch: downloaded {actual}, recorded at capture {expected_sha256}"
            + (f", agent header {header}" if header else "")
        )
    part.replace(output)
    return size
