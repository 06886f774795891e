"""The custody chain in a real ForensicCheckpoint on a real API server: the CRD keeps entries
append-only, even against the operator's own identity (the one that may write the status), and
`verify --ref` checks an archive against the chain it reads back."""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from tests.factories import by_agent, requested
from tests.identities import operator_client

from forensic_checkpoint.api.base import API_VERSION, GROUP, VERSION
from forensic_checkpoint.api.custody import (
    Actor,
    ActorKind,
    CustodyAction,
    CustodyEntry,
    KubeletResponse,
)
from forensic_checkpoint.cli.main import main
from forensic_checkpoint.domain.evidence import custody
from forensic_checkpoint.errors import ClusterError
from forensic_checkpoint.k8s.client import ApiClient, close
from forensic_checkpoint_dev import apiserver
from forensic_checkpoint_dev.cluster.testing import ClusterHandle

pytestmark = pytest.mark.cluster


def _path(handle: ClusterHandle, name: str, sub: str = "") -> str:
    return f"/apis/{API_VERSION}/namespaces/{handle.namespace}/forensiccheckpoints/{name}{sub}"


def _chain(subject: str, sha: str) -> list[CustodyEntry]:
    t0 = datetime.now(UTC).replace(microsecond=0)
    return by_agent(
        requested(subject, t0),
        subject,
        CustodyAction.CAPTURED,
        t0 + timedelta(seconds=2),
        "node-1",
        node="node-1",
        kubelet=KubeletResponse(status_code=200, message="/var/lib/kubelet/checkpoints/x.tar"),
        sha256=sha,
        size_bytes=1024,
    )


def _verified(chain: list[CustodyEntry], uid: str, actor: Actor, sha: str) -> list[CustodyEntry]:
    """``chain`` with a ``Verified`` entry appended a second after its head."""
    at = chain[-1].at + timedelta(seconds=1)
    return custody.append(chain, uid, action=CustodyAction.VERIFIED, at=at, actor=actor, sha256=sha)


def _set_custody(api: Any, handle: ClusterHandle, name: str, raw: list[Any]) -> Any:
    body = {"status": {"custody": raw}}
    return apiserver.request(api, "PATCH", _path(handle, name, "/status"), body=body)


@pytest.fixture(scope="module")
def operator_api(dev_cluster: ClusterHandle) -> Iterator[ApiClient]:
    """The operator's identity, the one that may patch ``status``: only the CRD's rules stand
    between it and the chain."""
    api = operator_client(dev_cluster)
    try:
        yield api
    finally:
        close(api)


def _create(api: ApiClient, handle: ClusterHandle, name: str) -> str:
    """Create a ForensicCheckpoint (status empty until the chain is set); its uid."""
    created = apiserver.request(
        api,
        "POST",
        f"/apis/{API_VERSION}/namespaces/{handle.namespace}/forensiccheckpoints",
        body={
            "apiVersion": API_VERSION,
            "kind": "ForensicCheckpoint",
            "metadata": {"name": name},
            "spec": {"podName": "web", "containers": ["app"]},
        },
    )
    return str(created["metadata"]["uid"])


def _checkpoint_with_chain(
    dev_cluster: ClusterHandle, api: ApiClient
) -> tuple[str, str, list[CustodyEntry]]:
    """A new ForensicCheckpoint whose status holds a two-entry chain: (name, uid, chain)."""
    name = f"chain-{secrets.token_hex(3)}"
    uid = _create(api, dev_cluster, name)
    chain = _chain(uid, "a" * 64)
    _set_custody(api, dev_cluster, name, [e.to_kube() for e in chain])
    return name, uid, chain


def _stored_chain(api: ApiClient, handle: ClusterHandle, name: str) -> list[Any]:
    return list(apiserver.request(api, "GET", _path(handle, name))["status"]["custody"])


def test_the_operator_identity_cannot_remove_the_chain(
    dev_cluster: ClusterHandle, operator_api: ApiClient
) -> None:
    name, _, chain = _checkpoint_with_chain(dev_cluster, operator_api)
    path = _path(dev_cluster, name, "/status")
    for body in ({"status": {"custody": None}}, {"status": None}):
        with pytest.raises(ClusterError, match="custody cannot be removed once written"):
            apiserver.request(operator_api, "PATCH", path, body=body)
    # A JSON patch "remove /status/custody", as the attack did it.
    with pytest.raises(ClusterError, match="custody cannot be removed once written"):
        apiserver.call(
            "json-patch status",
            k8s.CustomObjectsApi(operator_api).patch_namespaced_custom_object_status,
            GROUP,
            VERSION,
            dev_cluster.namespace,
            "forensiccheckpoints",
            name,
            [{"op": "remove", "path": "/status/custody"}],
            _content_type="application/json-patch+json",
        )
    assert _stored_chain(operator_api, dev_cluster, name) == [e.to_kube() for e in chain]


def test_the_operator_identity_cannot_replace_or_truncate_entries(
    dev_cluster: ClusterHandle, operator_api: ApiClient
) -> None:
    name, uid, chain = _checkpoint_with_chain(dev_cluster, operator_api)
    original = [e.to_kube() for e in chain]

    # Entry 0 swapped for one with a new sequence: no old entry to compare it with, so the
    # per-entry immutability rule alone would not see it.
    swapped = [{**original[0], "sequence": 2, "actor": {"kind": "User", "name": "mallory"}}]
    with pytest.raises(ClusterError, match="cannot be removed or replaced"):
        _set_custody(operator_api, dev_cluster, name, [*swapped, original[1]])
    # Entry 0 rewritten in place (same sequence).
    rewritten = {**original[0], "actor": {"kind": "User", "name": "mallory"}}
    with pytest.raises(ClusterError, match="immutable once written"):
        _set_custody(operator_api, dev_cluster, name, [rewritten, original[1]])
    # Truncated, and emptied.
    for shorter in ([original[0]], []):
        with pytest.raises(ClusterError, match="cannot be removed or replaced"):
            _set_custody(operator_api, dev_cluster, name, shorter)
    # An entry appended out of sequence.
    with pytest.raises(ClusterError, match="custody sequences are"):
        _set_custody(operator_api, dev_cluster, name, [*original, {**original[1], "sequence": 5}])
    assert _stored_chain(operator_api, dev_cluster, name) == original

    # The operator's own write, an append, still goes through.
    longer = _verified(chain, uid, Actor(kind=ActorKind.OPERATOR, name="operator"), "a" * 64)
    _set_custody(operator_api, dev_cluster, name, [e.to_kube() for e in longer])
    stored = custody.parse_chain(_stored_chain(operator_api, dev_cluster, name))
    assert custody.verify_chain(stored, uid).ok
    assert len(stored) == 3


def test_custody_is_append_only_and_verify_reads_it(
    dev_cluster: ClusterHandle, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    api = dev_cluster.admin_client()
    name = f"evidence-{secrets.token_hex(3)}"
    uid = _create(api, dev_cluster, name)
    archive = tmp_path / "checkpoint.tar"
    archive.write_bytes(os.urandom(4096))
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    chain = _chain(uid, sha)
    stored = _set_custody(api, dev_cluster, name, [e.to_kube() for e in chain])
    assert custody.verify_chain(custody.parse_chain(stored["status"]["custody"]), uid).ok, (
        "the API server must keep every field the hash covers"
    )

    # The API server refuses to edit or drop an entry ...
    edited = [e.to_kube() for e in chain]
    edited[1]["sha256"] = "f" * 64
    with pytest.raises(ClusterError, match="immutable"):
        _set_custody(api, dev_cluster, name, edited)
    with pytest.raises(ClusterError, match="cannot be removed"):
        _set_custody(api, dev_cluster, name, [chain[0].to_kube()])
    # ... but takes a new one.
    longer = _verified(chain, uid, Actor(kind=ActorKind.ANALYST, name="bob"), sha)
    _set_custody(api, dev_cluster, name, [e.to_kube() for e in longer])

    args = [
        "verify",
        str(archive),
        "--ref",
        name,
        "-n",
        dev_cluster.namespace,
        "--kubeconfig",
        str(dev_cluster.kubeconfig),
    ]
    assert main(args) == 0
    assert "3 entries verify" in capsys.readouterr().out

    archive.write_bytes(os.urandom(4096))
    assert main(args) == 1
    assert "matches no recorded hash" in capsys.readouterr().err

    other = tmp_path / "other.tar"
    other.write_bytes(b"x")
    assert (
        main(
            [
                "verify",
                str(other),
                "--ref",
                "no-such-checkpoint",
                "-n",
                dev_cluster.namespace,
                "--kubeconfig",
                str(dev_cluster.kubeconfig),
            ]
        )
        == 1
    )
    assert "404" in capsys.readouterr().err
