"""``kubectl forensic get-archive NAME -O FILE``: download the archive from the node's agent
through the API server, and give the file its name only after it proved to be the evidence.

The path: a port-forward (``pods/portforward``) to the agent pod on the capture's node, so it
works from a laptop outside the cluster network; TLS runs end to end over that tunnel and the
agent's certificate is verified for that node's name (:mod:`.agent_tls`), against the agents' CA
that the chart publishes in the ConfigMap ``<reader>-ca`` (or ``--agent-ca-file``). ``--direct``
dials the agent's endpoint instead (inside the cluster network).

The analyst's own credentials never go to the agent: a node decides what its agent does with
what it receives, and a compromised one would keep them. The plugin asks the API server for a
short token of the archive-reader ServiceAccount (which the agents let download, and nothing
else) for the audience of that one node's agent, so the token is worth nothing anywhere else.

The bytes go to ``<FILE>.part`` (mode 0600) while being hashed; the file is renamed to FILE only
when the hash is the one in status, the agent's header agrees, and the custody chain
(``status.custody``) verifies link by link and records this container's capture with that
hash. Otherwise nothing is left under either name and the command fails."""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import socket
import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from forensic_checkpoint.agent_identity import agent_audience
from forensic_checkpoint.api.custody import CustodyAction
from forensic_checkpoint.api.forensiccheckpoint import (
    ContainerStatus,
    ForensicCheckpoint,
    ForensicCheckpointStatus,
)
from forensic_checkpoint.cli.kubectl_forensic.agent_tls import agent_get, agent_tls_context
from forensic_checkpoint.cli.kubectl_forensic.context import get_checkpoint, namespace
from forensic_checkpoint.domain.evidence.custody import verify_chain
from forensic_checkpoint.errors import ClusterError, ConfigError, IntegrityError
from forensic_checkpoint.k8s.client import ApiClient
from forensic_checkpoint.k8s.tokens import ServiceAccountTokens
from forensic_checkpoint.progress import Progress

_CHUNK = 1 << 20
#: The key of the agents' CA certificate in the ConfigMap the chart publishes for readers.
CA_KEY = "ca.crt"


class Body(Protocol):
    """What the download reads: an HTTP response (``http.client.HTTPResponse``)."""

    status: int

    def read(self, amt: int) -> bytes: ...
    def getheader(self, name: str) -> str | None: ...


def run_plugin(api: ApiClient, args: argparse.Namespace) -> int:
    fcp = get_checkpoint(api, namespace(args.namespace, args.kubeconfig), args.name)
    status = fcp.status or ForensicCheckpointStatus()
    container = pick_container(status, args.container)
    archive = container.archive
    if archive is None or container.archive_deleted:
        raise ConfigError(f"{args.name}/{container.name} has no archive on its node")
    if not status.node_name or (args.direct and not status.agent_endpoint):
        raise ConfigError(f"{args.name} names no node or agent endpoint yet")
    reader_ns, reader = split_reader(args.reader)
    context = agent_tls_context(
        ca_file=args.agent_ca_file,
        ca_pem=None if args.agent_ca_file else published_ca(api, reader_ns, reader),
    )
    token = (
        args.token_file.read_text(encoding="utf-8").strip()
        if args.token_file
        else reader_token(api, args.reader, status.node_name)
    )
    path = f"/v1/captures/{container.capture_key}/archive"
    progress = Progress(args.output_file.name, archive.size_bytes, quiet=args.quiet)
    with agent_socket(api, args.direct, status, reader_ns, reader) as (sock, tunnel_error):
        try:
            response = agent_get(sock, status.node_name, context, path, token)
        except ssl.SSLCertVerificationError as exc:
            raise ClusterError(
                f"the peer is not the agent of node {status.node_name}: {exc.verify_message}"
            ) from exc
        except (OSError, ssl.SSLError) as exc:
            said = tunnel_error()
            raise ClusterError(
                f"cannot reach the agent of node {status.node_name}: {said or exc}"
            ) from exc
        with response, progress:
            size = download_verified(
                response,
                args.output_file,
                archive.sha256,
                progress=progress,
                check=lambda actual: custody_problems(fcp, container.name, actual),
            )
    print(
        f"{args.output_file}: {size} bytes, sha256 {archive.sha256} (verified), "
        f"custody chain of {len(status.custody)} entries verifies"
    )
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


def split_reader(reader: str) -> tuple[str, str]:
    namespace, _, name = reader.partition("/")
    if not namespace or not name:
        raise ConfigError(f"--reader {reader!r}: give NAMESPACE/NAME")
    return namespace, name


def reader_token(api: ApiClient, reader: str, node_name: str) -> str:
    """A 10-minute token of ``reader`` (``NAMESPACE/NAME``) for ``node_name``'s agent."""
    namespace, name = split_reader(reader)
    try:
        return ServiceAccountTokens(api).request(
            namespace, name, audience=agent_audience(node_name), expiration_seconds=600
        )
    except ClusterError as exc:
        raise ClusterError(
            f"cannot get a token of the archive reader {reader} ({exc.message}); you need the "
            f"Role {name} in {namespace} (create serviceaccounts/token), or --token-file"
        ) from exc


def published_ca(api: ApiClient, namespace: str, reader: str) -> str | None:
    """The agents' CA certificate from the ConfigMap ``<reader>-ca`` the chart publishes; None
    (the system store) when there is none."""
    from forensic_checkpoint.k8s.agent_tunnel import config_map_value

    try:
        return config_map_value(api, namespace, f"{reader}-ca", CA_KEY)
    except ClusterError as exc:
        raise ClusterError(
            f"cannot read the agents' CA ({exc.message}); you need the Role {reader} in "
            f"{namespace}, or --agent-ca-file"
        ) from exc


@contextmanager
def agent_socket(
    api: ApiClient, direct: bool, status: ForensicCheckpointStatus, namespace: str, role: str
) -> Iterator[tuple[socket.socket, Callable[[], str]]]:
    """A connected socket to the node's agent and what explains a failure on it: a port-forward
    through the API server, or (``direct``) a TCP connection to the agent's endpoint."""
    if direct:
        url = urlsplit(status.agent_endpoint)
        try:
            sock = socket.create_connection((url.hostname or "", url.port or 443), timeout=10)
        except OSError as exc:
            raise ClusterError(f"cannot connect to {status.agent_endpoint}: {exc}") from exc
        with sock:
            yield sock, str
        return
    from forensic_checkpoint.k8s.agent_tunnel import agent_pod, open_tunnel

    hint = (
        f"you need the Role {role} in {namespace} (list pods, get and create pods/portforward), "
        "or --direct from inside the cluster network"
    )
    try:
        pod = agent_pod(api, namespace, status.node_name)
        tunnel = open_tunnel(api, pod)
    except ClusterError as exc:
        refused = exc.status_code in {401, 403}
        raise ClusterError(f"{exc.message}" + (f"; {hint}" if refused else "")) from exc
    with tunnel:
        yield tunnel.sock, tunnel.error


def custody_problems(fcp: ForensicCheckpoint, container: str, actual: str) -> list[str]:
    """What in ``status.custody`` disagrees with a download of ``container`` hashing to
    ``actual``: a link that does not verify, or no ``Captured`` entry of it with that hash."""
    chain = fcp.status.custody if fcp.status is not None else []
    if not chain:
        return ["the ForensicCheckpoint has no custody chain"]
    problems = [
        f"custody: {p}" for p in verify_chain(chain, str(fcp.metadata.get("uid", ""))).problems
    ]
    captured = {
        entry.sha256
        for entry in chain
        if entry.action is CustodyAction.CAPTURED and entry.container == container
    }
    if actual not in captured:
        problems.append(
            f"custody: no Captured entry of {container} records sha256 {actual} "
            f"(recorded: {', '.join(sorted(str(s) for s in captured)) or 'none'})"
        )
    return problems


def download_verified(
    body: Body,
    output: Path,
    expected_sha256: str,
    *,
    progress: Progress,
    check: Callable[[str], list[str]],
) -> int:
    """Stream ``body`` to ``<output>.part`` while hashing; rename it to ``output`` only when
    the hash is ``expected_sha256`` (recorded at capture, before anything could have changed
    the file on the node), the agent's header agrees and ``check(hash)`` finds no problem.
    Returns the size. On any failure nothing is left under either name.
    """
    from forensic_checkpoint.api.agent import SHA256_HEADER

    if body.status != 200:
        raise ClusterError(f"the agent answered {body.status}: {body.read(300)!r}")
    header = body.getheader(SHA256_HEADER) or ""
    part = output.with_name(output.name + ".part")
    digest = hashlib.sha256()
    size = 0
    try:
        with part.open("wb") as out:
            os.fchmod(out.fileno(), 0o600)  # the archive holds the process's secrets
            try:
                while chunk := body.read(_CHUNK):
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
                    progress.advance(len(chunk))
            except (OSError, http.client.HTTPException) as exc:
                raise ClusterError(f"the download broke off after {size} bytes: {exc}") from exc
        actual = digest.hexdigest()
        problems = []
        if actual != expected_sha256 or (header and header != expected_sha256):
            problems.append(
                f"sha256 mismatch: downloaded {actual}, recorded at capture {expected_sha256}"
                + (f", agent header {header}" if header else "")
            )
        problems.extend(check(actual))
        if problems:
            raise IntegrityError(f"{output} not written: " + "; ".join(problems))
        part.replace(output)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return size
