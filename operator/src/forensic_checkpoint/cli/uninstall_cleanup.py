"""`forensic-checkpoint uninstall-cleanup`: remove what the agents and the operator wrote that
`helm uninstall` does not own, before it deletes the release (the chart's pre-delete hook Job).

Helm deletes only the objects it rendered. The agents write one ForensicNode per node and the
operator (kubelet.authMode csr) a ClusterRole and ClusterRoleBinding per node, all owned by the
Node, so they would outlive the release; agents' CertificateSigningRequests a signer refused
stay too. In this order:

1. the agents' DaemonSet is deleted in the foreground and awaited: a running agent writes its
   ForensicNode again on its next heartbeat, so the agents stop first;
2. every ForensicNode the agents labelled, every per-node kubelet client grant, every CSR for
   the project's two signers is deleted.

Never touched: ForensicCheckpoints (the evidence, with its custody chain), policies and the
CRDs. Only `helm uninstall` runs it: an upgrade or a rolling restart keeps every ForensicNode.
"""

from __future__ import annotations

import argparse
import os

from forensic_checkpoint.agent_identity import KUBELET_CLIENT_SIGNER, SIGNER_NAME
from forensic_checkpoint.k8s.certificates import CertificateSigningRequests
from forensic_checkpoint.k8s.client import ApiClient, close, from_environment
from forensic_checkpoint.k8s.daemonsets import DaemonSets
from forensic_checkpoint.k8s.nodes import ForensicNodes
from forensic_checkpoint.k8s.rbac import KubeletClientGrants

HELP = "Before `helm uninstall`: stop the agents, delete their ForensicNodes, grants and CSRs."

#: The label every agent puts on its ForensicNode (agent/node.py).
FORENSIC_NODE_SELECTOR = "app.kubernetes.io/part-of=forensic-checkpoint"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", help="kubeconfig file (else the usual lookup)")
    parser.add_argument(
        "--namespace",
        default=os.environ.get("POD_NAMESPACE", ""),
        help="the release's namespace (default: $POD_NAMESPACE)",
    )
    parser.add_argument(
        "--agent-daemonset", required=True, help="the agents' DaemonSet, stopped first"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        help="seconds to wait for the agents' pods to go (default 120)",
    )


def run(args: argparse.Namespace) -> int:
    if not args.namespace:
        from forensic_checkpoint.errors import ConfigError

        raise ConfigError("--namespace (or $POD_NAMESPACE) is required")
    api = from_environment(args.kubeconfig)
    try:
        for line in clean_up(api, args.namespace, args.agent_daemonset, timeout=args.timeout):
            print(line, flush=True)
    finally:
        close(api)
    return 0


def clean_up(api: ApiClient, namespace: str, daemonset: str, *, timeout: float) -> list[str]:
    """Do the clean-up; one line per object deleted, for the Job's log."""
    done: list[str] = []
    if DaemonSets(api, namespace).delete_and_wait(daemonset, timeout=timeout):
        done.append(f"daemonset {namespace}/{daemonset}: deleted, its pods are gone")
    nodes = ForensicNodes(api)
    for node in nodes.list(label_selector=FORENSIC_NODE_SELECTOR):
        name = str(node.metadata.get("name", ""))
        nodes.delete(name)
        done.append(f"forensicnode {name}: deleted")
    grants = KubeletClientGrants(api)
    for plural, name in grants.granted():
        grants.delete(plural, name)
        done.append(f"{plural.removesuffix('s')} {name}: deleted")
    csrs = CertificateSigningRequests(api)
    for signer in (SIGNER_NAME, KUBELET_CLIENT_SIGNER):
        for csr in csrs.for_signer(signer):
            csrs.delete(csr.spec.name)
            done.append(f"certificatesigningrequest {csr.spec.name} ({signer}): deleted")
    done.append(f"uninstall-cleanup: {len(done)} objects removed")
    return done
