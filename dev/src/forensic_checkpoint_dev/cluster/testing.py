"""What the pytest ``dev_cluster`` fixture yields: one object for a local dev cluster or, with
``FORENSIC_TEST_KUBECONFIG`` set, for an existing cluster (kind or real).

On an existing cluster the handle works only inside its own fresh namespace and never touches
others; it has no fake nodes and no cluster CA key, so tests that need them skip there.
"""

from __future__ import annotations

import atexit
import os
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from forensic_checkpoint.errors import ConfigError
from forensic_checkpoint.k8s.client import ApiClient, close, from_kubeconfig
from forensic_checkpoint_dev.cluster import access, pki
from forensic_checkpoint_dev.cluster.control_plane import DevCluster
from forensic_checkpoint_dev.cluster.fake_nodes import FakeNode
from forensic_checkpoint_dev.cluster.pods import create_running_pod

EXTERNAL_KUBECONFIG_ENV = "FORENSIC_TEST_KUBECONFIG"


@dataclass
class ClusterHandle:
    kubeconfig: Path
    server: str
    ca_file: Path | None
    namespace: str  #: a fresh namespace for this test session
    cluster: DevCluster | None = None  #: None on an external cluster
    _clients: list[ApiClient] = field(default_factory=list)

    @property
    def local(self) -> bool:
        return self.cluster is not None

    @property
    def nodes(self) -> list[FakeNode]:
        return self.cluster.nodes if self.cluster else []

    @property
    def ca(self) -> pki.CertPair:
        """The cluster CA certificate and key, to mint client certificates (local only)."""
        if self.cluster is None:
            raise ConfigError("an external cluster's CA key is not available")
        return self.cluster.ca

    def node(self, name: str) -> FakeNode:
        if self.cluster is None:
            raise ConfigError("an external cluster has no fake nodes")
        node = self.cluster.node(name)
        if not isinstance(node, FakeNode):
            raise ConfigError(f"{name} is a real node, not a fake one")
        return node

    def admin_client(self) -> ApiClient:
        """A new admin client; closed when the session ends."""
        api = from_kubeconfig(self.kubeconfig)
        self._clients.append(api)
        return api

    def issue_client_certificate(self, user: str, groups: Sequence[str] = ()) -> pki.CertPair:
        if self.cluster is None:
            raise ConfigError("an external cluster's CA key is not available")
        return self.cluster.issue_client_certificate(user, groups)

    def create_service_account(self, name: str, namespace: str | None = None) -> None:
        access.create_service_account(self.admin_client(), namespace or self.namespace, name)

    def request_token(
        self, name: str, namespace: str | None = None, audiences: Sequence[str] = ()
    ) -> str:
        return access.request_token(
            self.admin_client(), namespace or self.namespace, name, audiences=audiences
        )

    def service_account_user(self, name: str, namespace: str | None = None) -> str:
        return f"system:serviceaccount:{namespace or self.namespace}:{name}"

    def grant_node_checkpoint(self, name: str, subjects: Sequence[dict[str, str]]) -> None:
        access.grant_node_checkpoint(self.admin_client(), name, subjects)

    def bind_cluster_role(self, name: str, role: str, subjects: Sequence[dict[str, str]]) -> None:
        access.bind_cluster_role(self.admin_client(), name, role, subjects)

    def create_running_pod(
        self, name: str, node: str, namespace: str | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        return create_running_pod(
            self.admin_client(), namespace or self.namespace, name, node, **kwargs
        )

    def close(self) -> None:
        for api in self._clients:
            close(api)
        self._clients.clear()


@contextmanager
def session_cluster(directory: Path, *, nodes: int = 2) -> Iterator[ClusterHandle]:
    """A local dev cluster for the session, or the external one named by the environment."""
    external = os.environ.get(EXTERNAL_KUBECONFIG_ENV)
    namespace = f"fc-test-{secrets.token_hex(4)}"
    if external:
        api = from_kubeconfig(external)
        ca = api.configuration.ssl_ca_cert
        handle = ClusterHandle(
            kubeconfig=Path(external),
            server=str(api.configuration.host),
            ca_file=Path(ca) if ca else None,
            namespace=namespace,
        )
        access.ensure_namespace(api, namespace)
        try:
            yield handle
        finally:
            access.delete_namespace(api, namespace)
            handle.close()
            close(api)
        return
    cluster = DevCluster.start(directory, nodes=nodes, die_with_parent=True)
    atexit.register(cluster.stop)  # even if the session is torn down abnormally
    handle = ClusterHandle(
        kubeconfig=cluster.kubeconfig,
        server=cluster.server,
        ca_file=cluster.ca_file,
        namespace=namespace,
        cluster=cluster,
    )
    try:
        access.ensure_namespace(handle.admin_client(), namespace)
        yield handle
    finally:
        handle.close()
        cluster.stop()
        atexit.unregister(cluster.stop)
