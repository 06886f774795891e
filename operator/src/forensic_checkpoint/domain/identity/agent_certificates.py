"""Whether the operator approves a CertificateSigningRequest for an agent's certificate.

A request for one of the agents' signers (a :class:`~.profiles.Profile`: the serving or the
kubelet client certificate) is approved only when all of these hold; otherwise it is denied with
the first that does not, so that ``kubectl get csr`` and the agent's log say why:

1. it was made by the agents' ServiceAccount (``spec.username``, which the API server fills in);
2. with a token bound to exactly one Node (``spec.extra[NODE_NAME_EXTRA]``), and that Node exists;
3. it asks for exactly the profile's subject for that node, and nothing else: serving, the
   node's name (:func:`agent_server_name`) as the common name and only subject alternative
   name; kubelet client, CN ``forensic-checkpoint:agent:<node>``, O ``forensic-checkpoint:agents``
   and no subject alternative name (no other group such as ``system:masters``);
4. usages within the profile's (``digital signature``, ``key encipherment`` and ``server auth``,
   resp. ``client auth``), with ``server auth`` (resp. ``client auth``) among them;
5. its key is EC P-256/P-384 or RSA of at least 2048 bits, and its self-signature verifies
   (the requester holds the key).

So an agent gets certificates for its own node and for nothing else: not another node's name or
kubelet user, not a client certificate from the serving signer nor the reverse, not a wildcard
or an IP address the endpoint could be moved to.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from forensic_checkpoint.agent_identity import NODE_NAME_EXTRA
from forensic_checkpoint.domain.identity.csr_facts import CsrSpec, RequestFacts
from forensic_checkpoint.domain.identity.profiles import SERVING, Profile, Subject

APPROVED = SERVING.approved_reason
NOT_THE_AGENT = "NotTheAgentServiceAccount"
NO_NODE = "NoNodeClaim"
UNKNOWN_NODE = "UnknownNode"
WRONG_NAMES = "WrongNames"
WRONG_USAGES = "WrongUsages"
BAD_REQUEST = "InvalidRequest"
WEAK_KEY = "UnsupportedKey"

SERVER_USAGES = SERVING.usages
_ORGANIZATION_OID = "2.5.4.10"
_KEYS = ("EC P-256", "EC P-384")
_MIN_RSA_BITS = 2048


@dataclass(frozen=True)
class Verdict:
    approved: bool
    #: CamelCase, for the Approved/Denied condition's reason.
    reason: str
    message: str
    #: The node the certificate is for, and what it certifies (approved only).
    node: str = ""
    subject: Subject | None = None


def review(
    spec: CsrSpec,
    request: RequestFacts,
    *,
    agent_user: str,
    node_exists: Callable[[str], bool],
    profile: Profile = SERVING,
) -> Verdict:
    """The decision on one request for ``profile``'s signer (see the module's rules)."""
    if spec.username != agent_user:
        return _deny(
            NOT_THE_AGENT,
            f"requested by {spec.username or 'an unknown user'}, not by the agents' "
            f"ServiceAccount {agent_user}",
        )
    nodes = list(spec.extra.get(NODE_NAME_EXTRA) or ())
    if len(nodes) != 1 or not nodes[0]:
        return _deny(
            NO_NODE,
            f"the requesting token is not bound to one node ({NODE_NAME_EXTRA}: "
            f"{nodes or 'absent'}): only an agent pod's projected token is",
        )
    node = nodes[0]
    try:
        subject = profile.subject_for(node)
    except ValueError as exc:
        return _deny(NO_NODE, str(exc))
    refusal = _request_refusal(request, subject, node) or _usage_refusal(spec, profile)
    if refusal is not None:
        return refusal
    if not node_exists(node):
        return _deny(UNKNOWN_NODE, f"the token's node {node} does not exist")
    return Verdict(
        True,
        profile.approved_reason,
        f"{profile.kind} for {subject.describe()}, the agent of node {node}",
        node=node,
        subject=subject,
    )


def _request_refusal(request: RequestFacts, subject: Subject, node: str) -> Verdict | None:
    if request.request is None or request.unreadable:
        return _deny(BAD_REQUEST, request.unreadable or "no certificate request")
    if not request.signature_valid:
        return _deny(BAD_REQUEST, "the request's signature does not verify with its key")
    if request.dns_names != subject.dns_names or request.other_names:
        asked = [*request.dns_names, *request.other_names]
        allowed = (
            f"the only name allowed is {subject.dns_names[0]}"
            if subject.dns_names
            else "no subject alternative name is allowed"
        )
        return _deny(
            WRONG_NAMES,
            f"the token is bound to node {node}, so {allowed}; "
            f"the request asks for {asked or 'no subject alternative name'}",
        )
    organizations = (f"{_ORGANIZATION_OID}={subject.organization}",) * bool(subject.organization)
    if request.common_names != (subject.common_name,) or request.other_subject != organizations:
        asked = [*(f"CN={cn}" for cn in request.common_names), *request.other_subject]
        return _deny(
            WRONG_NAMES,
            f"the token is bound to node {node}, so the subject must be "
            f"{subject.describe()} alone, not {asked}",
        )
    if request.key not in _KEYS and not _strong_rsa(request.key):
        return _deny(WEAK_KEY, f"{request.key} key: use EC P-256, EC P-384 or RSA >= 2048 bits")
    return None


def _usage_refusal(spec: CsrSpec, profile: Profile) -> Verdict | None:
    usages = set(spec.usages)
    if usages - profile.usages or profile.required_usage not in usages:
        return _deny(
            WRONG_USAGES,
            f"usages {sorted(usages)}: a {profile.kind} needs '{profile.required_usage}' and "
            f"allows only {sorted(profile.usages)}",
        )
    return None


def _strong_rsa(key: str) -> bool:
    kind, _, bits = key.partition(" ")
    return kind == "RSA" and bits.isdigit() and int(bits) >= _MIN_RSA_BITS


def _deny(reason: str, message: str) -> Verdict:
    return Verdict(False, reason, message)
