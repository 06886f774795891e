"""Building Kubernetes API clients.

Every builder returns a fresh ``kubernetes.client.ApiClient`` with its own ``Configuration``:
nothing here touches the client library's process-wide default, so one process can talk to
several clusters (the dev-cluster tests do) without one overwriting another's credentials.

Code outside this package talks to the API server through its typed repositories (they build
every path); the raw REST helper they share (``_rest``) is private to the package.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

from forensic_checkpoint.errors import ConfigError
from forensic_checkpoint.k8s.kubeconfig import resolve

ApiClient = k8s_client.ApiClient

#: Where a pod's ServiceAccount credentials are mounted (the in-cluster convention).
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


def from_kubeconfig(path: str | os.PathLike[str], *, context: str | None = None) -> ApiClient:
    """A client for the cluster (and user) a kubeconfig file names."""
    cfg = k8s_client.Configuration()
    try:
        k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=os.fspath(path), context=context, client_configuration=cfg
        )
    except (OSError, k8s_config.ConfigException) as exc:
        raise ConfigError(f"cannot load kubeconfig {path}: {exc}") from exc
    except (ValueError, TypeError, AttributeError, yaml.YAMLError) as exc:
        # The library parses whatever the file holds: bytes that are not text, YAML that is not
        # a mapping. Its own exceptions there are not ConfigException.
        raise ConfigError(f"cannot load kubeconfig {path}: not a kubeconfig file") from exc
    return ApiClient(configuration=cfg)


def from_token(
    server: str, token: str, *, ca_file: str | os.PathLike[str] | None = None
) -> ApiClient:
    """A client that authenticates with a bearer token; TLS is verified unless no CA is given
    and the server is plain http (never skipped silently for https)."""
    cfg = _base_configuration(server, ca_file)
    cfg.api_key = {"authorization": token}
    cfg.api_key_prefix = {"authorization": "Bearer"}
    return ApiClient(configuration=cfg)


def from_client_certificate(
    server: str,
    cert_file: str | os.PathLike[str],
    key_file: str | os.PathLike[str],
    *,
    ca_file: str | os.PathLike[str] | None = None,
) -> ApiClient:
    """A client that authenticates with an x509 client certificate (CN = user, O = groups)."""
    cfg = _base_configuration(server, ca_file)
    cfg.cert_file = os.fspath(cert_file)
    cfg.key_file = os.fspath(key_file)
    return ApiClient(configuration=cfg)


def in_cluster(*, service_account_dir: Path = SERVICE_ACCOUNT_DIR) -> ApiClient:
    """A client from the pod's mounted ServiceAccount token (refreshed as kubelet rotates it)."""
    cfg = k8s_client.Configuration()
    loader = k8s_config.incluster_config.InClusterConfigLoader(  # type: ignore[no-untyped-call]
        token_filename=str(service_account_dir / "token"),
        cert_filename=str(service_account_dir / "ca.crt"),
    )
    try:
        loader.load_and_set(cfg)  # type: ignore[no-untyped-call]
    except k8s_config.ConfigException as exc:
        raise ConfigError(f"not running in a cluster: {exc}") from exc
    return ApiClient(configuration=cfg)


def from_environment(
    kubeconfig: str | os.PathLike[str] | None = None, *, context: str | None = None
) -> ApiClient:
    """kubectl's resolution (:mod:`.kubeconfig`): an explicit kubeconfig, every file of
    ``$KUBECONFIG``, in-cluster (when neither, nor a context, is given), then
    ``~/.kube/config``; ``context`` overrides the files' current context."""
    in_pod = (SERVICE_ACCOUNT_DIR / "token").exists() and os.environ.get("KUBERNETES_SERVICE_HOST")
    if not (kubeconfig or context or os.environ.get("KUBECONFIG")) and in_pod:
        return in_cluster()
    target = resolve(kubeconfig, context)
    return from_kubeconfig(os.pathsep.join(map(str, target.files)), context=target.context)


def pooled(api: ApiClient, size: int) -> ApiClient:
    """The same client with room for ``size`` connections to the API server (the library keeps
    ``5 x CPUs``, 10 on two cores, and drops each connection past that: a new TLS handshake
    for each call of a burst of more threads)."""
    cfg = api.configuration
    cfg.connection_pool_maxsize = size
    pooled_api = ApiClient(configuration=cfg)
    close(api)
    return pooled_api


def close(api: ApiClient) -> None:
    """Release the client's connection pool (the library's method is untyped)."""
    api.close()  # type: ignore[no-untyped-call]


def _base_configuration(server: str, ca_file: str | os.PathLike[str] | None) -> Any:
    cfg = k8s_client.Configuration()
    cfg.host = server.rstrip("/")
    if ca_file is not None:
        cfg.ssl_ca_cert = os.fspath(ca_file)
    cfg.verify_ssl = True
    return cfg


__all__ = [
    "SERVICE_ACCOUNT_DIR",
    "ApiClient",
    "close",
    "from_client_certificate",
    "from_environment",
    "from_kubeconfig",
    "from_token",
    "in_cluster",
]
