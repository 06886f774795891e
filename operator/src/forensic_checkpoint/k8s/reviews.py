"""Delegated authentication and authorisation through the API server.

A kubelet with webhook auth does exactly this for every request: a ``TokenReview`` to learn
who a bearer token belongs to, then a ``SubjectAccessReview`` to ask RBAC whether that user may
``create nodes/checkpoint`` on its node. The fake kubelet and the node agent reuse these so
that both decide the way a real kubelet would.

The reviewing client needs ``create`` on ``tokenreviews`` and ``subjectaccessreviews``
(the built-in ClusterRole ``system:auth-delegator``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

from kubernetes import client as k8s_client

from forensic_checkpoint.k8s._rest import translated
from forensic_checkpoint.k8s.client import ApiClient


class TokenReviewResult(NamedTuple):
    """Who a token belongs to. ``authenticated`` False means: reject (401)."""

    authenticated: bool
    username: str
    groups: tuple[str, ...]
    uid: str


def token_review(
    api: ApiClient, token: str, audiences: Sequence[str] | None = None
) -> TokenReviewResult:
    """Authenticate ``token`` through the API server.

    Without ``audiences`` the API server checks the token against its own audiences (the
    default for ServiceAccount tokens); with them, the token must carry one of them, and the
    review must say so in ``status.audiences``.
    Raises ``ClusterError`` only when the review itself fails, never for a bad token.
    """
    spec = k8s_client.V1TokenReviewSpec(
        token=token, audiences=list(audiences) if audiences else None
    )
    with translated("create TokenReview"):
        review = k8s_client.AuthenticationV1Api(api).create_token_review(
            k8s_client.V1TokenReview(spec=spec)
        )
    status = review.status
    if status is None or not status.authenticated or status.user is None:
        return TokenReviewResult(False, "", (), "")
    if audiences and not set(audiences) & set(status.audiences or ()):
        # An authenticator that ignores audiences answers without them: not for us, then.
        return TokenReviewResult(False, "", (), "")
    user = status.user
    return TokenReviewResult(True, user.username or "", tuple(user.groups or ()), user.uid or "")


def subject_access_review(  # noqa: PLR0917 - mirrors the review attributes, in order
    api: ApiClient,
    user: str,
    groups: Sequence[str],
    verb: str,
    resource: str,
    subresource: str = "",
    name: str = "",
    *,
    namespace: str = "",
    group: str = "",
    uid: str = "",
    extra: Mapping[str, Sequence[str]] | None = None,
) -> bool:
    """Ask the API server's authorisers whether ``user`` may do ``verb`` on the resource.

    Returns the decision; a denial is ``False``, not an error. Raises ``ClusterError`` when
    the review cannot be made (which a kubelet answers with 500, not 403).
    """
    attributes = k8s_client.V1ResourceAttributes(
        verb=verb,
        resource=resource,
        subresource=subresource or None,
        name=name or None,
        namespace=namespace or None,
        group=group,
    )
    spec = k8s_client.V1SubjectAccessReviewSpec(
        user=user,
        groups=list(groups),
        uid=uid or None,
        extra={k: list(v) for k, v in extra.items()} if extra else None,
        resource_attributes=attributes,
    )
    with translated(f"create SubjectAccessReview for {user}"):
        review = k8s_client.AuthorizationV1Api(api).create_subject_access_review(
            k8s_client.V1SubjectAccessReview(spec=spec)
        )
    return bool(review.status is not None and review.status.allowed)


def self_subject(api: ApiClient) -> str:
    """The user name the API server authenticates ``api`` as: a ``SelfSubjectReview``, which
    every authenticated user may create (the built-in ``system:basic-user``, Kubernetes 1.28+).
    Raises ``ClusterError`` when the review cannot be made."""
    with translated("create SelfSubjectReview"):
        review = k8s_client.AuthenticationV1Api(api).create_self_subject_review(
            k8s_client.V1SelfSubjectReview()
        )
    user = review.status.user_info if review.status is not None else None
    return str(user.username or "") if user is not None else ""


class AccessReviews:
    """Token reviews, bound to one reviewing client: the repository the agent authenticates the
    operator's token with. (:func:`subject_access_review` is used by the dev cluster's fake
    kubelet only, with its own client.)"""

    def __init__(self, api: ApiClient) -> None:
        self._api = api

    def token_review(self, token: str, audiences: Sequence[str] | None = None) -> TokenReviewResult:
        return token_review(self._api, token, audiences)
