"""The harness's own API-server calls, through the official ``kubernetes`` client's typed
APIs (``CoreV1Api``, ``RbacAuthorizationV1Api``, ``CustomObjectsApi`` ...), and ``request``, a
raw call by path for what a test does as an administrator or to see the API server's own answer
(server-side dry-run, a Status, an arbitrary path); the product's raw helper is private to it.

``call`` and ``request`` return the JSON body exactly as the API server sent it (the client does not
deserialize it into models, which would rewrite timestamps and drop fields it does not know),
and turns the client's errors into the product's: ``NotFoundError`` (404), ``ConflictError``
(409), otherwise ``ClusterError``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from forensic_checkpoint.api.base import CrdInfo
from forensic_checkpoint.errors import ClusterError, ConflictError, NotFoundError
from forensic_checkpoint.k8s.client import ApiClient

#: ``_content_type`` of a server-side apply, a JSON merge patch and a strategic merge patch.
APPLY = "application/apply-patch+yaml"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
TIMEOUT = 30.0

_ERRORS: dict[int, type[ClusterError]] = {404: NotFoundError, 409: ConflictError}


@contextmanager
def translated(action: str) -> Iterator[None]:
    """``with translated("create node x"):`` raises the product's errors for the client's."""
    try:
        yield
    except ApiException as exc:
        status = exc.status or None
        error = _ERRORS.get(exc.status or 0, ClusterError)
        raise error(f"{action}: {exc.status} {_message(exc)}".rstrip(), status_code=status) from exc
    except HTTPError as exc:
        raise ClusterError(f"{action}: API server unreachable: {exc}") from exc


def call(action: str, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``method(*args, **kwargs)`` of a typed API; its JSON body (``None`` when empty)."""
    with translated(action):
        response = method(*args, _preload_content=False, _request_timeout=TIMEOUT, **kwargs)
        raw = response.data
    return json.loads(raw) if raw else None


def request(
    api: ApiClient,
    method: str,
    path: str,
    body: Any = None,
    query: dict[str, str] | None = None,
    *,
    impersonate: str | None = None,
    impersonate_group: str | None = None,
) -> Any:
    """``request(api, "GET", "/api/v1/nodes")``: a raw call by path, for what a test does as an
    administrator or to see the API server's own answer; its JSON body. A PATCH is a merge patch.
    ``impersonate`` (and ``impersonate_group``) make the call as that user (in that group):
    the administrator may impersonate anyone.
    """
    content_type = MERGE_PATCH if method == "PATCH" else "application/json"
    headers = {"Accept": "application/json", "Content-Type": content_type}
    if impersonate is not None:
        headers["Impersonate-User"] = impersonate
    if impersonate_group is not None:
        headers["Impersonate-Group"] = impersonate_group
    prepared = api.param_serialize(
        method,
        path,
        query_params=list((query or {}).items()),
        header_params=headers,
        body=body,
        auth_settings=["BearerToken"],
    )
    with translated(f"{method} {path}"):
        response = api.call_api(*prepared, _request_timeout=TIMEOUT)
        response.read()  # type: ignore[no-untyped-call]
        # "object" keeps the JSON as sent; "default" keeps an error's Status for its message.
        return api.response_deserialize(response, {"2XX": "object", "default": "object"}).data


def custom_object(
    api: ApiClient, crd: CrdInfo, verb: str, target: str | dict[str, Any], namespace: str = ""
) -> Any:
    """``verb`` (create, get, delete ...) of one of our custom objects: ``target`` is its name,
    or its body for create; ``namespace`` for a namespaced kind."""
    objects = k8s.CustomObjectsApi(api)
    scope = [namespace] if namespace else []
    method = getattr(objects, f"{verb}_{'namespaced' if namespace else 'cluster'}_custom_object")
    name = target if isinstance(target, str) else target["metadata"]["name"]
    where = f"{namespace}/{name}" if namespace else name
    return call(
        f"{verb} {crd.kind} {where}", method, crd.group, crd.version, *scope, crd.plural, target
    )


def _message(exc: ApiException) -> str:
    """The ``message`` of the API server's Status, else the body or the HTTP reason."""
    try:
        status = json.loads(exc.body or "")
    except ValueError:
        return str(exc.body or exc.reason or "").strip()[:500]
    if isinstance(status, dict) and isinstance(status.get("message"), str):
        return str(status["message"])
    return str(exc.reason or "")
