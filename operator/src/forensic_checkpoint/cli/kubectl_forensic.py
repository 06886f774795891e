"""`kubectl forensic`: the kubectl plugin (console script ``kubectl-forensic``).

kubectl finds ``kubectl-forensic`` on the PATH and runs it for ``kubectl forensic ...``. It
talks to the cluster with the user's kubeconfig (``--kubeconfig``, ``$KUBECONFIG``,
``~/.kube/config``), so RBAC decides what each user may do: ``capture`` needs ``create
forensiccheckpoints`` in the namespace (the aggregated "edit" role), ``report`` needs ``get``.

- ``capture POD [-c C] [--search S] [--wait]``: create a ForensicCheckpoint, optionally wait
  with live progress.
- ``report NAME``: the analysis summary from the ForensicCheckpoint's status, with how long
  each container was frozen for its dump.
- ``get-archive NAME -o FILE``: download the archive from the node's agent, checking its sha256
  against the one the agent recorded at capture (status) before the file gets its final name.
- ``kubelet-cert``: issue the agents' kubelet client certificate through a
  CertificateSigningRequest (signer ``kubernetes.io/kube-apiserver-client``) into a Secret.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import os
import secrets
import sys
import time
from pathlib import Path
from typing import Any

from forensic_checkpoint.errors import ClusterError, ConfigError, ForensicCheckpointError

GROUP_PATH = "/apis/forensic-checkpoint.dev/v1alpha1"
CSR_PATH = "/apis/certificates.k8s.io/v1/certificatesigningrequests"
KUBELET_CLIENT_SIGNER = "kubernetes.io/kube-apiserver-client"
TERMINAL = ("Completed", "Failed")
EXIT_FAILED = 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubectl forensic", description="Forensic container checkpoints from kubectl."
    )
    parser.add_argument("--kubeconfig", help="default: $KUBECONFIG, else ~/.kube/config")
    sub = parser.add_subparsers(dest="command", required=True)

    capture = sub.add_parser("capture", help="checkpoint a pod's containers and analyse them")
    capture.add_argument("pod")
    capture.add_argument("-n", "--namespace", default=None, help="default: the context's")
    capture.add_argument("-c", "--container", action="append", default=[], help="repeatable")
    capture.add_argument("--search", action="append", default=[], help="literal to find")
    capture.add_argument("--regex", action="append", default=[], help="regex to find")
    capture.add_argument("--reason", default="", help="why (kept in the CR)")
    capture.add_argument("--timeout-seconds", type=int, default=None, help="kubelet timeout")
    capture.add_argument("--wait", action="store_true", help="wait until Completed or Failed")
    capture.add_argument("--wait-timeout", type=float, default=600.0)

    report = sub.add_parser("report", help="the analysis summary of a ForensicCheckpoint")
    report.add_argument("name")
    report.add_argument("-n", "--namespace", default=None)
    report.add_argument("-o", "--output", choices=("text", "json"), default="text")

    archive = sub.add_parser("get-archive", help="download a checkpoint archive (sha256 checked)")
    archive.add_argument("name")
    archive.add_argument("-n", "--namespace", default=None)
    archive.add_argument("-o", "--output", type=Path, required=True, help="file to write")
    archive.add_argument("-c", "--container", help="which container (default: the only one)")
    archive.add_argument(
        "--token-file",
        type=Path,
        help="bearer token the agent accepts (default: the kubeconfig's token)",
    )
    archive.add_argument("--agent-ca-file", type=Path, help="CA of the agents' certificates")

    nodes = sub.add_parser("nodes", help="each node's capture readiness (ForensicNodes)")
    nodes.add_argument("-o", "--output", choices=("table", "json"), default="table")

    cert = sub.add_parser(
        "kubelet-cert", help="issue the agents' kubelet client certificate through a CSR"
    )
    cert.add_argument("-n", "--namespace", default="forensic-checkpoint")
    cert.add_argument("--secret", default="forensic-checkpoint-kubelet-client")
    cert.add_argument("--user", default="forensic-checkpoint:agent", help="certificate CN")
    cert.add_argument("--days", type=int, default=365, help="requested validity")
    cert.add_argument(
        "--no-approve",
        dest="approve",
        action="store_false",
        help="leave the CSR for an administrator to approve (`kubectl certificate approve`)",
    )
    cert.add_argument("--wait-timeout", type=float, default=300.0)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from forensic_checkpoint.k8s.client import close, from_environment

    try:
        api = from_environment(args.kubeconfig)
        try:
            handler = {
                "capture": _capture,
                "report": _report,
                "get-archive": _get_archive,
                "kubelet-cert": _kubelet_cert,
                "nodes": _nodes,
            }[args.command]
            return handler(api, args)
        finally:
            close(api)
    except ForensicCheckpointError as exc:
        print(f"kubectl forensic {args.command}: error: {exc.message}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


# --- capture / report ------------------------------------------------------------------------


def _nodes(api: Any, args: argparse.Namespace) -> int:
    from forensic_checkpoint.cli.nodes import print_nodes

    return print_nodes(api, args.output)


def _namespace(given: str | None, kubeconfig: str | None) -> str:
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


def checkpoint_body(args: argparse.Namespace, namespace: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"podName": args.pod}
    if args.container:
        spec["containers"] = list(args.container)
    if args.timeout_seconds:
        spec["timeoutSeconds"] = args.timeout_seconds
    if args.search or args.regex:
        spec["analysis"] = {"searches": list(args.search), "regexes": list(args.regex)}
    if args.reason:
        spec["reason"] = {"text": args.reason}
    return {
        "apiVersion": "forensic-checkpoint.dev/v1alpha1",
        "kind": "ForensicCheckpoint",
        "metadata": {"generateName": f"{args.pod[:50]}-", "namespace": namespace},
        "spec": spec,
    }


def _capture(api: Any, args: argparse.Namespace) -> int:
    from forensic_checkpoint.k8s.client import request_json

    namespace = _namespace(args.namespace, args.kubeconfig)
    created = request_json(
        api,
        "POST",
        f"{GROUP_PATH}/namespaces/{namespace}/forensiccheckpoints",
        body=checkpoint_body(args, namespace),
    )
    name = created["metadata"]["name"]
    print(f"forensiccheckpoint.forensic-checkpoint.dev/{name} created")
    if not args.wait:
        return 0
    status = _wait(api, namespace, name, args.wait_timeout)
    _print_outcome(name, status)
    return 0 if status.get("phase") == "Completed" else EXIT_FAILED


def progress_line(status: dict[str, Any]) -> str:
    """One line for the live display: overall phase, then each container's phase."""
    parts = [status.get("phase") or "Pending"]
    for container in status.get("containers") or []:
        parts.append(f"{container['name']}: {container.get('phase', 'Pending')}")
    if status.get("nodeName"):
        parts.append(f"node {status['nodeName']}")
    return "  ".join(parts)


def _wait(api: Any, namespace: str, name: str, timeout: float) -> dict[str, Any]:
    """Poll until the phase is terminal, showing progress on stderr (rich, when a terminal)."""
    from rich.console import Console

    from forensic_checkpoint.k8s.client import request_json

    path = f"{GROUP_PATH}/namespaces/{namespace}/forensiccheckpoints/{name}"
    console = Console(stderr=True)
    deadline = time.monotonic() + timeout
    last = ""
    with console.status(f"waiting for {name}") as live:
        while True:
            status = (request_json(api, "GET", path) or {}).get("status") or {}
            line = progress_line(status)
            live.update(f"{name}: {line}")
            if line != last and not console.is_terminal:
                console.print(f"{name}: {line}", highlight=False)  # a log when piped
            last = line
            if status.get("phase") in TERMINAL:
                return dict(status)
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"{name} is still {status.get('phase', 'Pending')} after {timeout:.0f} s"
                )
            time.sleep(1.0)


def _print_outcome(name: str, status: dict[str, Any]) -> None:
    phase = status.get("phase")
    if phase == "Completed":
        frozen = f", frozen {status['frozenTime']}" if status.get("frozenTime") else ""
        print(f"{name}: Completed ({status.get('totalSize', '')}{frozen})")
        return
    print(f"{name}: {phase} {status.get('reason') or ''}: {status.get('message', '')}")
    for container in status.get("containers") or []:
        if container.get("remediation"):
            print(f"  {container['name']}: {container['remediation']}")


def _report(api: Any, args: argparse.Namespace) -> int:
    from forensic_checkpoint.k8s.client import request_json

    namespace = _namespace(args.namespace, args.kubeconfig)
    obj = request_json(
        api, "GET", f"{GROUP_PATH}/namespaces/{namespace}/forensiccheckpoints/{args.name}"
    )
    status = obj.get("status") or {}
    if args.output == "json":
        print(json.dumps(status, indent=2, sort_keys=True))
    else:
        print(render_report(args.name, obj), end="")
    return 0 if status.get("phase") == "Completed" else EXIT_FAILED


def render_report(name: str, obj: dict[str, Any]) -> str:
    """The status summary as text: what an investigator reads first."""
    status = obj.get("status") or {}
    phase = status.get("phase", "Pending")
    reason = f" ({status['reason']})" if status.get("reason") else ""
    lines = [
        f"ForensicCheckpoint {obj['metadata']['namespace']}/{name}: {phase}{reason}",
        f"pod {obj['spec']['podName']} on node {status.get('nodeName') or '-'}",
    ]
    for container in status.get("containers") or []:
        lines.append(f"\ncontainer {container['name']}: {container.get('phase', 'Pending')}")
        if container.get("reason"):
            lines.append(f"  reason: {container['reason']}: {container.get('message', '')}")
        if container.get("remediation"):
            lines.append(f"  remediation: {container['remediation']}")
        archive = container.get("archive")
        if archive:
            lines.append(f"  archive: {archive['path']} ({archive['sizeBytes']} bytes)")
            lines.append(f"  sha256:  {archive['sha256']}")
            if container.get("orphanArchive"):
                lines.append(
                    "  (written by the kubelet after the capture failed: kept on the node, "
                    "not analysed)"
                )
        if container.get("frozenTime"):
            # The container's tasks were frozen for the dump: probes and clients saw it hang.
            lines.append(f"  frozen:  {container['frozenTime']} (the workload was paused)")
        summary = container.get("summary") or {}
        if summary:
            ident = summary.get("identity") or {}
            lines.append(f"  image: {ident.get('image', '')}  runtime: {ident.get('runtime', '')}")
            lines.append(f"  processes: {summary.get('processCount', 0)}")
            for proc in summary.get("processes") or []:
                lines.append(
                    f"    {proc['pid']:>7} {proc.get('comm', '')}  {proc.get('cmdline', '')}"
                )
            lines.append(
                f"  sockets: {summary.get('listeningCount', 0)} listening, "
                f"{summary.get('establishedCount', 0)} established"
            )
            for sock in summary.get("established") or []:
                lines.append(f"    {sock.get('local', '')} -> {sock.get('remote', '')}")
            files = summary.get("files") or {}
            lines.append(
                f"  files: {files.get('changedCount', 0)} changed, "
                f"{files.get('deletedCount', 0)} deleted"
            )
            lines.append(f"  memory matches: {summary.get('memoryHitCount', 0)}")
            for hit in summary.get("memoryHits") or []:
                lines.append(
                    f"    pid {hit['pid']} at {hit['address']} {hit['pattern']!r}: "
                    + hit.get("context", "")
                )
            for finding in summary.get("topFindings") or []:
                lines.append(
                    f"  finding [{finding['severity']}] {finding['rule']}: "
                    + finding.get("title", "")
                )
    return "\n".join(lines) + "\n"


# --- get-archive -------------------------------------------------------------------------------


def _get_archive(api: Any, args: argparse.Namespace) -> int:
    from forensic_checkpoint.k8s.client import request_json

    namespace = _namespace(args.namespace, args.kubeconfig)
    obj = request_json(
        api, "GET", f"{GROUP_PATH}/namespaces/{namespace}/forensiccheckpoints/{args.name}"
    )
    status = obj.get("status") or {}
    container = pick_container(status, args.container)
    archive = container.get("archive")
    if not archive or container.get("archiveDeleted"):
        raise ConfigError(f"{args.name}/{container['name']} has no archive on its node")
    endpoint = status.get("agentEndpoint")
    if not endpoint:
        raise ConfigError(f"{args.name} names no agent endpoint")
    token = (
        args.token_file.read_text(encoding="utf-8").strip()
        if args.token_file
        else _kubeconfig_token(api)
    )
    url = f"{endpoint.rstrip('/')}/v1/captures/{container['captureKey']}/archive"
    size = download_verified(url, token, args.output, archive["sha256"], args.agent_ca_file)
    print(f"{args.output}: {size} bytes, sha256 {archive['sha256']} (verified)")
    return 0


def pick_container(status: dict[str, Any], name: str | None) -> dict[str, Any]:
    containers = status.get("containers") or []
    if name:
        for container in containers:
            if container["name"] == name:
                return dict(container)
        raise ConfigError(f"no container {name!r} in this ForensicCheckpoint")
    if len(containers) != 1:
        names = ", ".join(c["name"] for c in containers) or "none yet"
        raise ConfigError(f"choose a container with -c ({names})")
    return dict(containers[0])


def _kubeconfig_token(api: Any) -> str:
    value = str((api.configuration.api_key or {}).get("authorization", ""))
    if not value:
        raise ConfigError("the kubeconfig has no bearer token; pass --token-file")
    return value.removeprefix("Bearer ").strip()


def download_verified(
    url: str, token: str, output: Path, expected_sha256: str, ca_file: Path | None
) -> int:
    """Stream to ``<output>.part`` while hashing; rename only when the hash is the recorded one.

    Both the agent's header and the status are checked against the bytes: the status hash was
    recorded at capture, before anything could have changed the file on the node.
    """
    import requests

    from forensic_checkpoint.api.agent import SHA256_HEADER

    part = output.with_name(output.name + ".part")
    digest = hashlib.sha256()
    size = 0
    try:
        with requests.get(
            url,
            headers={"Authorization": f"Bearer {token}"},
            stream=True,
            timeout=(10, 120),
            verify=str(ca_file) if ca_file else True,
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


# --- kubelet-cert ------------------------------------------------------------------------------


def _kubelet_cert(api: Any, args: argparse.Namespace) -> int:
    key_pem, csr_pem = new_key_and_csr(args.user)
    name = f"{args.secret}-{secrets.token_hex(4)}"
    cert_pem = issue_client_certificate(
        api, name, csr_pem, days=args.days, approve=args.approve, timeout=args.wait_timeout
    )
    store_tls_secret(api, args.namespace, args.secret, cert_pem, key_pem)
    print(f"secret/{args.secret} in {args.namespace}: client certificate for user {args.user!r}")
    return 0


def new_key_and_csr(user: str) -> tuple[bytes, bytes]:
    """An ECDSA P-256 key and a CSR with CN = user and no groups (O), made locally: the private
    key never leaves this process except into the Secret."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, user)]))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem, csr.public_bytes(serialization.Encoding.PEM)


def issue_client_certificate(
    api: Any, name: str, csr_pem: bytes, *, days: int, approve: bool, timeout: float
) -> bytes:
    """Submit the CSR to ``kubernetes.io/kube-apiserver-client``, approve it (needs the
    ``approve`` verb on that signer), and wait for the signer's certificate."""
    from forensic_checkpoint.k8s.client import request_json

    body = {
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "forensic-checkpoint"}},
        "spec": {
            "request": base64.b64encode(csr_pem).decode(),
            "signerName": KUBELET_CLIENT_SIGNER,
            "usages": ["digital signature", "client auth"],
            "expirationSeconds": days * 86400,
        },
    }
    request_json(api, "POST", CSR_PATH, body=body)
    path = f"{CSR_PATH}/{name}"
    try:
        if approve:
            csr = request_json(api, "GET", path)
            csr.setdefault("status", {})["conditions"] = [
                {
                    "type": "Approved",
                    "status": "True",
                    "reason": "ForensicCheckpointKubeletClient",
                    "message": "kubectl forensic kubelet-cert",
                }
            ]
            request_json(api, "PUT", f"{path}/approval", body=csr)
        else:
            print(f"waiting for approval: kubectl certificate approve {name}", file=sys.stderr)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = request_json(api, "GET", path).get("status") or {}
            for cond in status.get("conditions") or []:
                if cond.get("type") in ("Denied", "Failed") and cond.get("status") == "True":
                    raise ClusterError(f"CSR {name} {cond['type']}: {cond.get('message', '')}")
            if status.get("certificate"):
                return base64.b64decode(status["certificate"])
            time.sleep(0.5)
        raise ClusterError(
            f"CSR {name} was not signed within {timeout:.0f} s (is a signer running?)"
        )
    finally:
        # The certificate is in the Secret (or the request failed); the CSR is no longer needed.
        with contextlib.suppress(ForensicCheckpointError):
            request_json(api, "DELETE", path)


def store_tls_secret(api: Any, namespace: str, name: str, cert_pem: bytes, key_pem: bytes) -> None:
    """Create or replace the ``kubernetes.io/tls`` Secret (server-side apply)."""
    from forensic_checkpoint.k8s.client import request_json

    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/part-of": "forensic-checkpoint"},
        },
        "data": {
            "tls.crt": base64.b64encode(cert_pem).decode(),
            "tls.key": base64.b64encode(key_pem).decode(),
        },
    }
    request_json(
        api,
        "PATCH",
        f"/api/v1/namespaces/{namespace}/secrets/{name}",
        body=body,
        query={"fieldManager": "kubectl-forensic", "force": "true"},
        content_type="application/apply-patch+yaml",
    )


if __name__ == "__main__":
    sys.exit(main())
