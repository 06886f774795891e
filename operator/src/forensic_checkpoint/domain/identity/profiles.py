"""The two kinds of certificate the operator issues to agents, one signer (and CA) each, and
what each must say for a node: the serving certificate (its node's DNS name, for TLS servers)
and the kubelet client certificate (its node's kubelet user in the agents' group, for TLS
clients, no names). The review (:mod:`.agent_certificates`) and the issuing (:mod:`.signing`)
are the same for both; only this differs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from forensic_checkpoint.agent_identity import (
    AGENTS_GROUP,
    KUBELET_CLIENT_SIGNER,
    SIGNER_NAME,
    agent_server_name,
    kubelet_client_user,
)


@dataclass(frozen=True)
class Subject:
    """What one certificate certifies, exactly: nothing more may be asked for or issued."""

    common_name: str
    #: The one organisation (a kubelet group), or none.
    organization: str = ""
    dns_names: tuple[str, ...] = ()
    #: Extended key usage: TLS client (True) or TLS server (False).
    client: bool = False

    def describe(self) -> str:
        org = f", O={self.organization}" if self.organization else ""
        return f"CN={self.common_name}{org}"


@dataclass(frozen=True)
class Profile:
    signer_name: str
    #: The Approved condition's reason.
    approved_reason: str
    #: "serving certificate", for messages.
    kind: str
    #: Usages a request may ask for; ``required_usage`` must be among them.
    usages: frozenset[str]
    required_usage: str
    #: The subject for a node; ``ValueError`` for a name that is not a node name.
    subject_for: Callable[[str], Subject]
    #: Whether the node's agent user must first be granted ``create nodes/checkpoint`` on that
    #: node (and no other): the kubelet authorises a client certificate through RBAC.
    grants_node_checkpoint: bool = False


def _serving(node: str) -> Subject:
    name = agent_server_name(node)
    return Subject(name, dns_names=(name,))


def _kubelet_client(node: str) -> Subject:
    return Subject(kubelet_client_user(node), organization=AGENTS_GROUP, client=True)


SERVING = Profile(
    signer_name=SIGNER_NAME,
    approved_reason="AgentServingCertificate",
    kind="serving certificate",
    usages=frozenset({"digital signature", "key encipherment", "server auth"}),
    required_usage="server auth",
    subject_for=_serving,
)
KUBELET_CLIENT = Profile(
    signer_name=KUBELET_CLIENT_SIGNER,
    approved_reason="AgentKubeletClientCertificate",
    kind="kubelet client certificate",
    usages=frozenset({"digital signature", "key encipherment", "client auth"}),
    required_usage="client auth",
    subject_for=_kubelet_client,
    grants_node_checkpoint=True,
)
PROFILES = (SERVING, KUBELET_CLIENT)
