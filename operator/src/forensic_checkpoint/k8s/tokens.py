"""ServiceAccount tokens from the TokenRequest API, for an audience other than the API server's.

The operator asks for its own tokens here, one audience per node's agent
(:func:`forensic_checkpoint.api.agent.agent_audience`): a token that reaches a node is accepted
by that node's agent only, and by neither the API server nor any other agent.
"""

from __future__ import annotations

from kubernetes import client as k8s_client

from forensic_checkpoint import agent_identity
from forensic_checkpoint.errors import ClusterError, ConfigError
from forensic_checkpoint.k8s._rest import translated
from forensic_checkpoint.k8s.client import ApiClient


def service_account_of(username: str) -> tuple[str, str]:
    """``(namespace, name)`` of a ServiceAccount user name; ``ConfigError`` for anyone else."""
    found = agent_identity.service_account_of(username)
    if found is None:
        raise ConfigError(
            f"the operator runs as {username or 'an unknown user'}, not as a ServiceAccount: "
            "it needs one to ask for the audience-bound tokens the agents accept"
        )
    return found


class ServiceAccountTokens:
    def __init__(self, api: ApiClient) -> None:
        self._api = api

    def request(self, namespace: str, name: str, *, audience: str, expiration_seconds: int) -> str:
        """A token of ``namespace/name`` for ``audience`` (needs ``create`` on
        ``serviceaccounts/token`` for that ServiceAccount)."""
        body = k8s_client.AuthenticationV1TokenRequest(
            spec=k8s_client.V1TokenRequestSpec(
                audiences=[audience], expiration_seconds=expiration_seconds
            )
        )
        with translated(f"create token for serviceaccount {namespace}/{name}"):
            issued = k8s_client.CoreV1Api(self._api).create_namespaced_service_account_token(
                name, namespace, body
            )
        if issued.status is None or not issued.status.token:
            raise ClusterError(f"the token request for {namespace}/{name} returned no token")
        return str(issued.status.token)
