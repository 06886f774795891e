"""Building Kubernetes API clients, and a small JSON request helper.

Every builder returns a fresh ``kubernetes.client.ApiClient`` with its own ``Configuration``:
nothing here touches the client library's process-wide default, so one process can talk to
several clusters (the dev-cluster tests do) without one overwriting another's credentials.

``request_json`` is for the few callers above ``k8s`` (the dev cluster, the fake kubelet) that
need plain REST calls; the import-linter keeps the ``kubernetes`` package out of those layers,
so they pass paths and dicts through here and get the project's errors back.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError as Urllib3Error

from forensic_checkpoint.errors import ClusterError, ConfigError, ConflictError, NotFoundError

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


def from_environment(kubeconfig: str | os.PathLike[str] | None = None) -> ApiClient:
    """The usual resolution order: an explicit kubeconfig, ``$KUBECONFIG``, in-cluster, then
    ``~/.kube/config``."""
    if kubeconfig:
        return from_kubeconfig(kubeconfig)
    env = os.environ.get("KUBECONFIG")
    if env:
        return from_kubeconfig(env.split(os.pathsep)[0])
    if (SERVICE_ACCOUNT_DIR / "token").exists() and os.environ.get("KUBERNETES_SERVICE_HOST"):
        return in_cluster()
    return from_kubeconfig(Path.home() / ".kube" / "config")


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


def api_error(exc: ApiException, action: str) -> ClusterError:
    """Translate a client exception into the project's error, keeping the API's own message."""
    message = _status_message(exc)
    text = f"{action}: {exc.status} {message}".rstrip()
    if exc.status == 404:
        return NotFoundError(text, status_code=404)
    if exc.status == 409:
        return ConflictError(text, status_code=409)
    return ClusterError(text, status_code=exc.status or None)


def _status_message(exc: ApiException) -> str:
    body = exc.body
    if body:
        try:
            status = json.loads(body)
        except ValueError:
            return body.strip()[:500]
        if isinstance(status, dict) and isinstance(status.get("message"), str):
            return str(status["message"])
    return str(exc.reason or "")


@contextmanager
def translated(action: str) -> Iterator[None]:
    """``with translated("create pod x"):`` turns client and transport errors into ours."""
    try:
        yield
    except ApiException as exc:
        raise api_error(exc, action) from exc
    except Urllib3Error as exc:
        raise ClusterError(f"{action}: API server unreachable: {exc}") from exc


def request_json(
    api: ApiClient,
    method: str,
    path: str,
    *,
    body: Any = None,
    query: Mapping[str, str] | None = None,
    content_type: str = "application/json",
    timeout: float = 30.0,
) -> Any:
    """One REST call with JSON in and out, e.g. ``request_json(api, "GET", "/api/v1/nodes")``.

    ``content_type`` selects the patch flavour for PATCH (``application/merge-patch+json``,
    ``application/apply-patch+yaml`` ...). Returns the decoded body (``None`` when empty).
    """
    headers = {"Accept": "application/json", "Content-Type": content_type}
    with translated(f"{method} {path}"):
        request = api.param_serialize(
            method=method,
            resource_path=path,
            query_params=list((query or {}).items()),
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        response = api.call_api(*request, _request_timeout=timeout)
        raw = response.read()  # type: ignore[no-untyped-call]
        if not 200 <= response.status <= 299:
            raise ApiException(http_resp=response)
    if not raw:
        return None
    return json.loads(raw)
