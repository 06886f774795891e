"""`kubectl forensic`: the kubectl plugin (console script ``kubectl-forensic``).

kubectl finds ``kubectl-forensic`` on the PATH and runs it for ``kubectl forensic ...``, with
the arguments as typed and no flags of its own. So the plugin takes kubectl's ``--kubeconfig``,
``--context`` and ``-n/--namespace`` itself, before or after the subcommand, resolved by
kubectl's rules (:mod:`forensic_checkpoint.k8s.kubeconfig`). It talks to the cluster with the
user's own credentials, so RBAC decides what each user may do: ``capture`` needs ``create
forensiccheckpoints`` in the namespace (the aggregated "edit" role), ``report`` needs ``get``,
``get-archive`` also the archive-reader Role of the release namespace (docs/install.md).

One module per subcommand, each with ``run(api, args) -> int``, imported only when chosen:

- ``capture POD [-c C] [--search S] [--wait]`` (:mod:`.capture`): create a ForensicCheckpoint,
  optionally wait with live progress.
- ``report NAME`` (:mod:`.report`): the analysis summary from the ForensicCheckpoint's status,
  with how long each container was frozen for its dump.
- ``get-archive NAME -O FILE`` (:mod:`.archive`): download the archive from the node's agent
  through a port-forward (TLS end to end, the agent verified for its node), checking its sha256
  and the custody chain (status) before the file gets its final name.
- ``nodes`` (:mod:`forensic_checkpoint.cli.nodes`): each node's capture readiness.
- ``kubelet-cert`` (:mod:`.kubelet_cert`): issue the agents' kubelet client certificate through
  a CertificateSigningRequest (signer ``kubernetes.io/kube-apiserver-client``) into a Secret.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

from forensic_checkpoint.cli.flags import (
    FORMATS,
    add_kube_flags,
    add_output_file,
    add_output_format,
)
from forensic_checkpoint.cli.main import boundary

EXIT_FAILED = 1

#: subcommand -> module (under this package, or a full name) whose ``run(api, args)`` runs it.
_HANDLERS = {
    "capture": ".capture",
    "report": ".report",
    "get-archive": ".archive",
    "kubelet-cert": ".kubelet_cert",
    "nodes": "forensic_checkpoint.cli.nodes",
}


#: The namespace of a subcommand whose objects live in the chart's namespace, not the user's.
_OWN_NAMESPACE = {"kubelet-cert": "forensic-checkpoint"}

#: The chart's archive reader for the release "forensic-checkpoint" in its namespace.
DEFAULT_READER = "forensic-checkpoint/forensic-checkpoint-archive-reader"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubectl forensic", description="Forensic container checkpoints from kubectl."
    )
    add_kube_flags(parser)
    sub = parser.add_subparsers(dest="command", required=True)

    capture = sub.add_parser("capture", help="checkpoint a pod's containers and analyse them")
    capture.add_argument("pod")
    capture.add_argument("-c", "--container", action="append", default=[], help="repeatable")
    capture.add_argument("--search", action="append", default=[], help="literal to find")
    capture.add_argument("--regex", action="append", default=[], help="regex to find")
    capture.add_argument("--reason", default="", help="why (kept in the CR)")
    capture.add_argument("--timeout-seconds", type=int, default=None, help="kubelet timeout")
    capture.add_argument("--wait", action="store_true", help="wait until Completed or Failed")
    capture.add_argument("--wait-timeout", type=float, default=600.0)

    report = sub.add_parser("report", help="the analysis summary of a ForensicCheckpoint")
    report.add_argument("name")
    add_output_format(report)

    archive = sub.add_parser("get-archive", help="download a checkpoint archive (sha256 checked)")
    archive.add_argument("name")
    # kubectl's -o is the output format; the file is -O/--output-file (-o FILE still works).
    add_output_file(archive, legacy_o=True)
    archive.add_argument("-c", "--container", help="which container (default: the only one)")
    archive.add_argument(
        "--token-file",
        type=Path,
        help="a token the node's agent accepts (for its audience); default: ask for a "
        "10-minute one of the archive-reader ServiceAccount (--reader)",
    )
    archive.add_argument(
        "--reader",
        default=DEFAULT_READER,
        help="NAMESPACE/NAME of the archive-reader ServiceAccount (default: %(default)s)",
    )
    archive.add_argument(
        "--agent-ca-file",
        type=Path,
        help="CA of the agents' certificates (default: the ConfigMap <reader>-ca the chart "
        "publishes beside the reader)",
    )
    archive.add_argument(
        "--direct",
        action="store_true",
        help="dial the agent's endpoint instead of a port-forward through the API server "
        "(inside the cluster network only)",
    )
    archive.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    nodes = sub.add_parser("nodes", help="each node's capture readiness (ForensicNodes)")
    add_output_format(nodes, (*FORMATS, "table"))

    cert = sub.add_parser(
        "kubelet-cert", help="issue the agents' kubelet client certificate through a CSR"
    )
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
    for name, subparser in sub.choices.items():
        add_kube_flags(subparser, subcommand=True, namespace_default=_OWN_NAMESPACE.get(name))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "get-archive" and args.output_file is None:
        parser.error("get-archive: the file to write is required (-O/--output-file FILE)")
    try:
        from forensic_checkpoint.k8s.client import close, from_environment
        from forensic_checkpoint.k8s.kubeconfig import resolve

        given = args.namespace or _OWN_NAMESPACE.get(args.command)
        args.namespace = resolve(args.kubeconfig, args.context, given).namespace
        api = from_environment(args.kubeconfig, context=args.context)
        try:
            handler = importlib.import_module(_HANDLERS[args.command], __name__)
            return int(handler.run_plugin(api, args))
        finally:
            close(api)
    except BaseException as exc:
        return boundary(f"kubectl forensic {args.command}", exc)
