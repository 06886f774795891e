"""The raw REST plumbing under the typed repositories: one JSON call, one watch request's
event stream, error translation, and the paths of the resources the project uses.

Private to ``k8s/``: an import-linter contract forbids every other product package to import it,
so that API paths and untyped bodies stay behind the repositories (``checkpoints``, ``nodes``,
``pods``, ``certificates``, ``reviews``). Custom-resource paths come from the models' CRD info.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import Any, TypeVar
from urllib.parse import quote

from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException
from pydantic import BaseModel, ValidationError
from urllib3.exceptions import HTTPError as Urllib3Error

from forensic_checkpoint.api.base import CrdInfo
from forensic_checkpoint.errors import ClusterError, ConflictError, NotFoundError

log = logging.getLogger(__name__)

_M = TypeVar("_M", bound=BaseModel)

MERGE_PATCH = "application/merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"


def custom_path(crd: CrdInfo, *, namespace: str = "", name: str = "", subresource: str = "") -> str:
    """``/apis/<group>/<version>[/namespaces/<ns>]/<plural>[/<name>[/<subresource>]]``."""
    path = f"/apis/{crd.group}/{crd.version}"
    if namespace:
        path += f"/namespaces/{quote(namespace, safe='')}"
    return _named(f"{path}/{crd.plural}", name, subresource)


def core_path(plural: str, *, namespace: str = "", name: str = "", subresource: str = "") -> str:
    """``/api/v1[/namespaces/<ns>]/<plural>[/<name>[/<subresource>]]`` (pods, nodes, secrets)."""
    path = "/api/v1"
    if namespace:
        path += f"/namespaces/{quote(namespace, safe='')}"
    return _named(f"{path}/{plural}", name, subresource)


def group_path(
    group: str,
    version: str,
    plural: str,
    *,
    namespace: str = "",
    name: str = "",
    subresource: str = "",
) -> str:
    """A resource of a built-in API group: cluster scoped (certificatesigningrequests) or, with
    ``namespace``, namespaced (daemonsets)."""
    path = f"/apis/{group}/{version}"
    if namespace:
        path += f"/namespaces/{quote(namespace, safe='')}"
    return _named(f"{path}/{plural}", name, subresource)


def valid_items(model: type[_M], listing: Any) -> list[_M]:
    """The items of a list answer that parse as ``model``; one that does not is logged and left
    out rather than failing the whole list."""
    found: list[_M] = []
    for item in (listing or {}).get("items") or []:
        try:
            found.append(model.model_validate(item))
        except ValidationError as exc:
            name = (item.get("metadata") or {}).get("name", "?")
            log.warning("ignoring invalid %s %s: %s", model.__name__, name, exc)
    return found


def _named(base: str, name: str, subresource: str) -> str:
    if not name:
        return base
    path = f"{base}/{quote(name, safe='')}"
    return f"{path}/{subresource}" if subresource else path


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


#: Seconds to connect for a watch request; its read timeout is the caller's.
WATCH_CONNECT_TIMEOUT = 10.0


class EventStream:
    """Watch requests (``?watch=true``) read event by event as the API server sends them, one
    request at a time, each to its end (its ``timeoutSeconds``). :meth:`close` ends the one
    being read at once, from any thread: it shuts the socket down, as a read blocked in another
    thread does not notice a plain close (the same is done by the client's own ``Watch.stop``).
    """

    def __init__(self, api: ApiClient) -> None:
        self._api = api
        self._lock = threading.Lock()
        self._response: Any = None
        self._closed = threading.Event()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def close(self) -> None:
        with self._lock:
            self._closed.set()
            response, self._response = self._response, None
        if response is not None:
            with suppress(OSError, AttributeError):  # gone or never opened: nothing to end
                response.response.connection.sock.shutdown(socket.SHUT_RDWR)

    def events(
        self, path: str, query: Mapping[str, str], *, read_timeout: float
    ) -> Iterator[dict[str, Any]]:
        """One watch request's events as decoded (``{"type": ..., "object": ...}``; ``ERROR``
        events too: the caller knows what a 410 means to it). Nothing after :meth:`close`."""
        action = f"WATCH {path}"
        with translated(action):
            request = self._api.param_serialize(
                method="GET",
                resource_path=path,
                query_params=[*query.items(), ("watch", "true")],
                header_params={"Accept": "application/json"},
                auth_settings=["BearerToken"],
            )
            if self.closed:
                return
            response = self._api.call_api(
                *request, _request_timeout=(WATCH_CONNECT_TIMEOUT, read_timeout)
            )
            with self._lock:
                closed, self._response = self._closed.is_set(), response
            try:
                if closed:
                    return
                if not 200 <= response.status <= 299:
                    response.read()  # type: ignore[no-untyped-call]
                    raise ApiException(http_resp=response)
                yield from self._lines(response)
            except (Urllib3Error, OSError, ValueError) as exc:
                if self._closed.is_set():  # the shut-down socket's error: the end asked for
                    return
                if isinstance(exc, Urllib3Error):
                    raise
                raise ClusterError(f"{action}: {exc}") from exc
            finally:
                with self._lock:
                    self._response = None
                response.response.close()
                response.response.release_conn()

    def _lines(self, response: Any) -> Iterator[dict[str, Any]]:
        pending = b""
        for chunk in response.response.stream(amt=None, decode_content=True):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if line.strip():
                    yield json.loads(line)
