"""The generated CRD on a real API server: full status round trip without pruning, CEL
immutability of the spec, schema validation of names and bounds."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from forensic_checkpoint.agent.capture.summary import summarize
from forensic_checkpoint.analysis import AnalyzerOptions, analyze
from forensic_checkpoint.api.agent import capture_key
from forensic_checkpoint.api.custody import CustodyEntry
from forensic_checkpoint.api.forensiccheckpoint import (
    ArchiveStatus,
    ContainerCapturePhase,
    ContainerStatus,
    ExportStatus,
    ForensicCheckpointStatus,
)
from forensic_checkpoint.domain.capture import reconcile
from forensic_checkpoint.errors import ClusterError
from forensic_checkpoint.k8s.client import ApiClient, close
from forensic_checkpoint_dev import apiserver
from forensic_checkpoint_dev.cluster import access
from forensic_checkpoint_dev.stack import LocalStack

pytestmark = [pytest.mark.cluster]

#: Not watched by the test operator: these objects must stay as the test writes them.
NAMESPACE = "fcp-crd"
BASE = f"/apis/forensic-checkpoint.dev/v1alpha1/namespaces/{NAMESPACE}/forensiccheckpoints"
DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.fixture
def api(stack: LocalStack) -> Any:
    client = stack.cluster.admin_client()
    access.ensure_namespace(client, NAMESPACE)
    yield client
    close(client)


def _create(api: ApiClient, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    body = {
        "apiVersion": "forensic-checkpoint.dev/v1alpha1",
        "kind": "ForensicCheckpoint",
        "metadata": {"name": name},
        "spec": spec,
    }
    return dict(apiserver.request(api, "POST", BASE, body=body))


def _full_status(uid: str) -> ForensicCheckpointStatus:
    report = analyze(
        DATA / "counter-blog-crio.tar.zst", AnalyzerOptions(searches=["RANDOM_4105_KEY"])
    )
    now = datetime(2026, 11, 28, 12, 0, 1, tzinfo=UTC)
    ref = reconcile.CheckpointRef(name="roundtrip", namespace=NAMESPACE, uid=uid, generation=1)
    container = ContainerStatus(
        name="counter",
        capture_key=capture_key(uid, "counter"),
        phase=ContainerCapturePhase.COMPLETED,
        kubelet_status_code=200,
        requested_at=now,
        finished_at=now,
        archive=ArchiveStatus(
            path="/var/lib/kubelet/checkpoints/x.tar",
            sha256="a" * 64,
            size_bytes=9700864,
            captured_at=now,
        ),
        summary=summarize(
            report, pod="counters", namespace="default", container="counter"
        ).model_copy(update={"findings": {"high": 1}}),
        report_url="https://10.0.0.1:8443/v1/captures/k/report",
        export=ExportStatus(
            destination="s3://bucket/key", sha256="b" * 64, encrypted=True, exported_at=now
        ),
    )
    status = ForensicCheckpointStatus(
        node_name="node-1", pod_uid="pod-uid", containers=[container], started_at=now
    )
    status = reconcile.aggregate(status, ref=ref, now=now)
    status.custody = [
        CustodyEntry.model_validate(
            {
                "sequence": 0,
                "action": "Requested",
                "at": "2026-11-28T12:00:00.123456Z",
                "actor": {"kind": "User", "name": "alice"},
                "prevHash": "0" * 64,
                "hash": "c" * 64,
            }
        )
    ]
    return status


def test_full_status_round_trips_without_pruning(api: ApiClient) -> None:
    created = _create(api, "roundtrip", {"podName": "counters"})
    status = _full_status(created["metadata"]["uid"])
    assert status.containers[0].summary and status.containers[0].summary.memory_hit_count == 2
    written = status.to_kube()
    apiserver.request(
        api,
        "PATCH",
        f"{BASE}/roundtrip/status",
        body={"status": written},
    )
    back = apiserver.request(api, "GET", f"{BASE}/roundtrip")
    assert ForensicCheckpointStatus.model_validate(back["status"]) == status
    assert back["status"] == written


def test_spec_is_immutable(api: ApiClient) -> None:
    _create(api, "immutable", {"podName": "counters", "containers": ["counter"]})
    with pytest.raises(ClusterError) as info:
        apiserver.request(
            api,
            "PATCH",
            f"{BASE}/immutable",
            body={"spec": {"podName": "other"}},
        )
    assert info.value.status_code == 422
    assert "spec is immutable" in info.value.message
    # Metadata (labels, the hold) stays editable.
    apiserver.request(
        api,
        "PATCH",
        f"{BASE}/immutable",
        body={"metadata": {"labels": {"forensic-checkpoint.dev/hold": "true"}}},
    )


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"podName": "Bad_Name"}, "spec.podName"),
        ({"podName": "p", "containers": ["UPPER"]}, "spec.containers[0]"),
        ({"podName": "p", "containers": ["a", "a"]}, "spec.containers[1]"),
        ({"podName": "p", "timeoutSeconds": 0}, "spec.timeoutSeconds"),
        ({"podName": "p", "analysis": {"searches": ["x" * 300]}}, "spec.analysis.searches[0]"),
        ({"containers": ["a"]}, "spec.podName"),
    ],
)
def test_validation_rejects_bad_specs(api: ApiClient, spec: dict[str, Any], field: str) -> None:
    with pytest.raises(ClusterError) as info:
        _create(api, "invalid", spec)
    assert info.value.status_code == 422
    assert field in info.value.message
    with contextlib.suppress(ClusterError):
        apiserver.request(api, "DELETE", f"{BASE}/invalid")


def test_defaults_are_applied_by_the_api_server(api: ApiClient) -> None:
    created = _create(api, "defaults", {"podName": "counters", "analysis": {}})
    assert created["spec"]["timeoutSeconds"] == 120
    assert created["spec"]["analysis"]["reveal"] is False
