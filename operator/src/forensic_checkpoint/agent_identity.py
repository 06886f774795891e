"""Who a node's agent is, as its serving certificate says (one DNS name per node), and what it
accepts: only tokens for its own audience (:func:`agent_audience`).

Every agent serves a certificate for :func:`agent_server_name` of its own node, and only that
name. The operator and the kubectl plugin verify an agent against the agents' CA *at that name*
(TLS SNI and hostname check), whatever host its ForensicNode's endpoint names: an endpoint
pointed at another node's agent fails the handshake before any token is sent. The name is not
resolved through DNS; it only identifies.

With ``--serving-certificate=csr`` each agent asks for its certificate through a
CertificateSigningRequest for :data:`SIGNER_NAME`, which only the operator approves and signs,
and only for the node the requesting token is bound to (:data:`NODE_NAME_EXTRA`).

With ``--kubelet-client-certificate=csr`` each agent also asks :data:`KUBELET_CLIENT_SIGNER`
for a short-lived client certificate for its kubelet, user :func:`kubelet_client_user` of its
node in group :data:`AGENTS_GROUP` (bound to ``create nodes/checkpoint``). That signer has its
own CA, which the kubelets trust and the API server does not.

The bottom layer: the operator, the agent, the domain and the CLI share it.
"""

from __future__ import annotations

#: The CertificateSigningRequest signer whose requests the operator approves and signs.
SIGNER_NAME = "forensic-checkpoint.dev/agent-serving"
#: The signer of the agents' kubelet client certificates (its CA is in the kubelets' client CA
#: bundle only).
KUBELET_CLIENT_SIGNER = "forensic-checkpoint.dev/kubelet-client"
#: The organisation (group) of every agent's kubelet client certificate, and nothing else.
AGENTS_GROUP = "forensic-checkpoint:agents"
#: Parent of every agent's name: ``<node>.agents.forensic-checkpoint.dev``.
AGENTS_DOMAIN = "agents.forensic-checkpoint.dev"
SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"
#: Parent of every agent's token audience: ``forensic-checkpoint.dev/agent/<node>``.
AUDIENCE_PREFIX = "forensic-checkpoint.dev/agent/"
#: The user "extra" key in which the API server records the Node a ServiceAccount token is
#: bound to (a DaemonSet pod's projected token), copied into a CSR's ``spec.extra``.
NODE_NAME_EXTRA = "authentication.kubernetes.io/node-name"


def service_account_of(username: str) -> tuple[str, str] | None:
    """``(namespace, name)`` of a ServiceAccount's user name
    (``system:serviceaccount:<namespace>:<name>``); None for any other user. The operator and
    the agents are named to each other this way."""
    namespace, _, name = username.removeprefix(SERVICE_ACCOUNT_PREFIX).partition(":")
    if not username.startswith(SERVICE_ACCOUNT_PREFIX) or not namespace or not name:
        return None
    return namespace, name


def agent_server_name(node_name: str) -> str:
    """The DNS name in the serving certificate of ``node_name``'s agent, and nobody else's.

    Node names are DNS subdomains (lower case), so the result is a valid DNS name and two nodes
    never share one; ``ValueError`` for anything else (an empty name, a wildcard).
    """
    labels = node_name.split(".")
    if not node_name or any(not _is_label(label) for label in labels):
        raise ValueError(f"{node_name!r} is not a Kubernetes node name (a DNS subdomain)")
    return f"{node_name}.{AGENTS_DOMAIN}"


def agent_audience(node_name: str) -> str:
    """The token audience the agent of ``node_name`` requires (and no other agent accepts): a
    token the operator or an analyst mints for one node's agent is worth nothing at another."""
    return AUDIENCE_PREFIX + node_name


def kubelet_client_user(node_name: str) -> str:
    """The common name (kubelet user) of ``node_name``'s agent's kubelet client certificate;
    ``ValueError`` as :func:`agent_server_name`."""
    agent_server_name(node_name)  # the same check
    return f"forensic-checkpoint:agent:{node_name}"


def kubelet_client_grant_name(node_name: str) -> str:
    """The ClusterRole and ClusterRoleBinding that let :func:`kubelet_client_user` of
    ``node_name`` create ``nodes/checkpoint`` on that node alone (``ValueError`` as
    :func:`agent_server_name`). The same for every installation, like the user it grants."""
    agent_server_name(node_name)
    return f"forensic-checkpoint:kubelet-client:{node_name}"


def _is_label(label: str) -> bool:
    return (
        0 < len(label) <= 63
        and label[0].isalnum()
        and label[-1].isalnum()
        and all(c.isdigit() or ("a" <= c <= "z") or c == "-" for c in label)
    )
