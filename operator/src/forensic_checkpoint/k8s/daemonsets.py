"""DaemonSets: the uninstall clean-up stops the agents' DaemonSet before it removes what the
agents published (a running agent writes its ForensicNode again on its next heartbeat)."""

from __future__ import annotations

import time
from collections.abc import Callable

from forensic_checkpoint.errors import ClusterError, NotFoundError
from forensic_checkpoint.k8s._rest import group_path, request_json
from forensic_checkpoint.k8s.client import ApiClient

_GROUP, _VERSION, _PLURAL = "apps", "v1", "daemonsets"
_FOREGROUND = "Foreground"


class DaemonSets:
    def __init__(self, api: ApiClient, namespace: str) -> None:
        self._api = api
        self._namespace = namespace

    def delete_and_wait(
        self,
        name: str,
        *,
        timeout: float,
        poll: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> bool:
        """Delete DaemonSet ``name`` in the foreground and wait until it is gone, which with
        foreground deletion is after its pods are. False if it was not there; ClusterError
        after ``timeout`` seconds."""
        path = group_path(_GROUP, _VERSION, _PLURAL, namespace=self._namespace, name=name)
        try:
            request_json(
                self._api,
                "DELETE",
                path,
                body={"kind": "DeleteOptions", "propagationPolicy": _FOREGROUND},
            )
        except NotFoundError:
            return False
        deadline = time.monotonic() + timeout
        while True:
            try:
                request_json(self._api, "GET", path)
            except NotFoundError:
                return True
            if time.monotonic() >= deadline:
                raise ClusterError(
                    f"DaemonSet {self._namespace}/{name} still there {timeout:.0f} s after "
                    "its deletion"
                )
            sleep(poll)
