"""The operator's use of readiness, the CRIU log excerpt, the custody chain and the alert
receiver's RBAC: the pure parts, with readiness verdicts made by ``domain.readiness`` itself
from recorded kubelet answers."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from forensic_checkpoint.api.agent import (
    ArchiveInfo,
    CaptureState,
    CaptureStatus,
    CustodyFact,
    ExportPhase,
    ExportProgress,
    capture_key,
)
from forensic_checkpoint.api.conditions import READY, ConditionStatus
from forensic_checkpoint.api.custody import ActorKind, CustodyAction, ExportRecord, KubeletResponse
from forensic_checkpoint.api.forensiccheckpoint import (
    MAX_CRIU_LOG_EXCERPT,
    AlertReference,
    AnalysisSummary,
    CaptureReasonSpec,
    ContainerCapturePhase,
    ContainerStatus,
    ForensicCheckpointSpec,
    ForensicCheckpointStatus,
    Phase,
)
from forensic_checkpoint.api.forensicnode import ForensicNode
from forensic_checkpoint.domain.capture import checkpoint_events, finished, reconcile
from forensic_checkpoint.domain.conditions import find_condition
from forensic_checkpoint.domain.evidence import checkpoint_custody, custody
from forensic_checkpoint.domain.readiness import (
    KubeletProbe,
    NodeProbe,
    capture_blocker,
    evaluate,
    to_status,
)
from forensic_checkpoint.k8s.alert_captures import RBAC_RULES

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
REF = reconcile.CheckpointRef(name="blog", namespace="default", uid="5d0c-uid", generation=1)
SHA = "cd" * 32
REPO = Path(__file__).resolve().parents[2]
READINESS_DATA = REPO / "tests" / "readiness" / "data"


def _node(probe: NodeProbe, name: str = "node-b") -> ForensicNode:
    """A ForensicNode as the agent writes it after one readiness round over ``probe``."""
    checks, conditions = to_status(evaluate(probe), [], now=T0)
    return ForensicNode.model_validate(
        {
            "metadata": {"name": name},
            "status": {
                "checks": [c.to_kube() for c in checks],
                "conditions": [c.to_kube() for c in conditions],
            },
        }
    )


def _targets() -> ForensicCheckpointStatus:
    status = ForensicCheckpointStatus(node_name="node-b")
    status.containers = [
        ContainerStatus(name=n, capture_key=capture_key(REF.uid, n)) for n in ("app", "sidecar")
    ]
    return reconcile.aggregate(status, ref=REF, now=T0)


# --- readiness fail-fast ----------------------------------------------------------------------


def test_a_gate_off_node_fails_the_checkpoint_with_reason_and_remediation() -> None:
    gate_off = (READINESS_DATA / "kubelet-404-gate-off.body.txt").read_text()
    node = _node(
        NodeProbe(
            container_runtime_version="cri-o://1.26.4",
            kubelet_version="v1.28.3",
            kubelet=KubeletProbe(404, gate_off),
        )
    )
    blocker = capture_blocker(node)
    assert blocker is not None and blocker.reason == "CheckpointingDisabled"

    failed = reconcile.node_not_ready(_targets(), blocker, ref=REF, now=T0)
    assert failed.phase == Phase.FAILED
    assert failed.reason == "CheckpointingDisabled"
    assert all(c.phase == ContainerCapturePhase.FAILED for c in failed.containers)
    assert {c.remediation for c in failed.containers} == {blocker.remediation}
    assert blocker.remediation and blocker.remediation in failed.message
    ready = find_condition(failed.conditions, READY)
    assert ready is not None and ready.status == ConditionStatus.FALSE
    assert ready.reason == "CheckpointingDisabled" and "Remediation:" in ready.message
    events = checkpoint_events.transition_events(_targets(), failed)
    warnings = [e for e in events if e.type == "Warning"]
    assert {e.reason for e in warnings} == {"CheckpointingDisabled"}
    assert all(blocker.remediation[:40] in e.message for e in warnings)


def test_an_old_runtime_blocks_and_a_ready_node_does_not() -> None:
    old = _node(
        NodeProbe(
            container_runtime_version="containerd://1.7.24",
            kubelet_version="v1.31.0",
            kubelet=KubeletProbe(404, "pod does not exist"),
        )
    )
    blocker = capture_blocker(old)
    assert blocker is not None and blocker.reason == "RuntimeUnsupported"
    assert "containerd" in blocker.remediation.lower() or "2.0" in blocker.remediation
    ready = _node(
        NodeProbe(
            container_runtime_version="containerd://2.0.2",
            kubelet_version="v1.31.0",
            kubelet=KubeletProbe(404, "pod does not exist"),
        )
    )
    assert capture_blocker(ready) is None


# --- the CRIU log excerpt -------------------------------------------------------------------


def _failed_capture(excerpt: str | None) -> CaptureStatus:
    return CaptureStatus(
        key=capture_key(REF.uid, "app"),
        state=CaptureState.FAILED,
        reason="EstablishedTCPNeedsConfig",
        message="CRIU refused a connected TCP socket",
        remediation="tcp-established in /etc/criu/runc.conf",
        kubelet_status_code=500,
        criu_log_excerpt=excerpt,
        finished_at=T0,
    )


def test_a_failed_capture_keeps_the_criu_log_excerpt_capped_at_a_line() -> None:
    container = _targets().containers[0]
    log = (READINESS_DATA / "containerd-tcp.dump.log").read_text()
    kept = reconcile.apply_capture_status(container, _failed_capture(log), report_url="", now=T0)
    assert kept.criu_log_excerpt == log
    assert "tcp-established" in kept.remediation

    long = "".join(f"({i:04d}) Error (criu/sk-inet.c:200): line {i}\n" for i in range(150))
    capped = reconcile.apply_capture_status(
        container, _failed_capture(long), report_url="", now=T0
    ).criu_log_excerpt
    assert len(capped) <= MAX_CRIU_LOG_EXCERPT
    assert capped.startswith(long[:100]) and capped.endswith("...\n")
    assert capped.removesuffix("...\n") == long[: len(capped) - 4]  # whole lines only
    none = reconcile.apply_capture_status(container, _failed_capture(None), report_url="", now=T0)
    assert none.criu_log_excerpt == ""


# --- custody ----------------------------------------------------------------------------------


def _spec(**kwargs: Any) -> ForensicCheckpointSpec:
    return ForensicCheckpointSpec(pod_name="counters", **kwargs)


RECEIVER = "system:serviceaccount:forensic-checkpoint:forensic-checkpoint-operator"


def _alert_spec() -> ForensicCheckpointSpec:
    alert = {"source": "alertmanager", "name": "CounterSecretLeak", "policy": "counter-secrets"}
    reference = AlertReference.model_validate({**alert, "fingerprint": "e59b47998d601dcf"})
    return _spec(reason=CaptureReasonSpec(alert=reference))


def test_without_the_receiver_identity_no_alert_provenance_is_recorded() -> None:
    metadata = {"annotations": {checkpoint_custody.REQUESTED_BY_ANNOTATION: RECEIVER}}
    status = checkpoint_custody.record_request(
        ForensicCheckpointStatus(), subject=REF.uid, metadata=metadata, spec=_alert_spec(), at=T0
    )
    assert status.custody[0].actor.kind is ActorKind.SERVICE_ACCOUNT


@pytest.mark.parametrize(
    ("metadata", "spec", "kind", "name", "source"),
    [
        (
            {"managedFields": [{"manager": "kubectl-create", "operation": "Update"}]},
            _spec(),
            ActorKind.USER,
            "unknown",
            checkpoint_custody.FROM_FIELD_MANAGER,
        ),
        (
            {"annotations": {checkpoint_custody.REQUESTED_BY_ANNOTATION: "alice@example.com"}},
            _spec(),
            ActorKind.USER,
            "alice@example.com",
            checkpoint_custody.FROM_ANNOTATION,
        ),
        (
            {
                "annotations": {
                    checkpoint_custody.REQUESTED_BY_ANNOTATION: "system:serviceaccount:ir:bot"
                }
            },
            _spec(),
            ActorKind.SERVICE_ACCOUNT,
            "system:serviceaccount:ir:bot",
            checkpoint_custody.FROM_ANNOTATION,
        ),
        (
            {"annotations": {checkpoint_custody.REQUESTED_BY_ANNOTATION: RECEIVER}},
            _alert_spec(),
            ActorKind.ALERT,
            "alertmanager/e59b47998d601dcf",
            checkpoint_custody.FROM_ALERT,
        ),
        # Alert provenance from anyone but the receiver is not recorded as such (issue 15, #6).
        (
            {"annotations": {checkpoint_custody.REQUESTED_BY_ANNOTATION: "mallory"}},
            _alert_spec(),
            ActorKind.USER,
            "mallory",
            checkpoint_custody.FROM_ANNOTATION,
        ),
        (
            {"managedFields": [{"manager": "kubectl-create", "operation": "Update"}]},
            _alert_spec(),
            ActorKind.USER,
            "unknown",
            checkpoint_custody.FROM_FIELD_MANAGER,
        ),
    ],
)
def test_the_requested_entry_names_its_actor_and_where_that_came_from(
    metadata: dict[str, Any], spec: ForensicCheckpointSpec, kind: ActorKind, name: str, source: str
) -> None:
    status = checkpoint_custody.record_request(
        ForensicCheckpointStatus(),
        subject=REF.uid,
        metadata=metadata,
        spec=spec,
        at=T0,
        receiver=RECEIVER,
    )
    (entry,) = status.custody
    assert entry.action is CustodyAction.REQUESTED
    assert (entry.actor.kind, entry.actor.name, entry.reason) == (kind, name, source)
    assert entry.message
    if spec.reason is not None and kind is not ActorKind.ALERT:
        assert "spec.reason.alert ignored: not created by the alert receiver" in entry.message
    if source == checkpoint_custody.FROM_FIELD_MANAGER:
        assert "kubectl-create" in entry.message and "not a user" in entry.message
    # A second pass (or a restarted operator) does not add another.
    again = checkpoint_custody.record_request(
        status, subject=REF.uid, metadata=metadata, spec=spec, at=T0 + timedelta(seconds=5)
    )
    assert again.custody == status.custody


def _fact(action: str, container: str, at: datetime, **fields: Any) -> CustodyFact:
    return CustodyFact(
        action=CustodyAction(action),
        time=at,
        actor="agent/node-b",
        node="node-b",
        container=container,
        **fields,
    )


def test_agent_facts_become_one_linear_chain_that_verifies() -> None:
    status = checkpoint_custody.record_request(
        _targets(), subject=REF.uid, metadata={}, spec=_spec(), at=T0
    )
    app = [
        _fact(
            "Captured",
            "app",
            T0 + timedelta(seconds=2),
            kubelet_response=KubeletResponse(status_code=200, message="/ckpt/app.tar"),
            sha256=SHA,
            size_bytes=1000,
        )
    ]
    # The sidecar's job ran on its own clock, a little behind the app's.
    sidecar = [
        _fact("Captured", "sidecar", T0 + timedelta(seconds=1), sha256="ef" * 32, size_bytes=9)
    ]
    first = checkpoint_custody.record_facts(
        status, {"app": app, "sidecar": sidecar}, subject=REF.uid
    )
    requested, app_captured, sidecar_captured = first.custody
    assert (app_captured.container, sidecar_captured.container) == ("app", "sidecar")
    assert app_captured.actor.kind is ActorKind.AGENT and app_captured.node == "node-b"
    assert app_captured.kubelet is not None and app_captured.kubelet.message == "/ckpt/app.tar"
    # Entered at the head's time, its own time kept in the message: the chain never goes back.
    assert sidecar_captured.at == app_captured.at
    assert "reported at" in (sidecar_captured.message or "")
    assert custody.verify_chain(first.custody, REF.uid).ok

    # The agent's list only grows: the next poll repeats the old facts and adds the export.
    url = "s3://evidence/dev/default/counters/app/k/abc.tar"
    app += [
        _fact("Exported", "app", T0 + timedelta(seconds=5), url=url, object_sha256=SHA),
        _fact("Verified", "app", T0 + timedelta(seconds=6), url=url, object_sha256=SHA),
    ]
    second = checkpoint_custody.record_facts(
        first, {"app": app, "sidecar": sidecar}, subject=REF.uid
    )
    assert second.custody[: len(first.custody)] == first.custody
    assert [e.action.value for e in second.custody] == [
        "Requested",
        "Captured",
        "Captured",
        "Exported",
        "Verified",
    ]
    assert custody.verify_chain(second.custody, REF.uid).ok
    assert custody.exported_sha256s(second.custody) == {SHA}
    assert custody.captured_sha256s(second.custody) == {SHA, "ef" * 32}
    # Nothing new: the same status object back.
    assert checkpoint_custody.record_facts(second, {"app": app}, subject=REF.uid) is second
    # The container is covered by the hash; another CR's uid does not verify the chain.
    moved = app_captured.model_copy(update={"container": "sidecar"})
    assert not custody.verify_chain([requested, moved, *second.custody[2:]], REF.uid).ok
    assert not custody.verify_chain(second.custody, "another-uid").ok


def test_the_export_sub_status_is_followed_until_it_settles() -> None:
    container = _targets().containers[0]
    assert not finished.exporting(finished.apply_export(container, None))
    pending = finished.apply_export(container, ExportProgress(phase=ExportPhase.PENDING))
    assert finished.exporting(pending)
    done_at = T0 + timedelta(seconds=3)
    record = ExportRecord(
        url="s3://evidence/k.tar.age",
        sha256="ab" * 32,
        archive_sha256=SHA,
        size_bytes=10,
        encrypted=True,
        exported_at=done_at,
    )
    done = finished.apply_export(pending, ExportProgress(phase=ExportPhase.EXPORTED, record=record))
    assert not finished.exporting(done)
    assert done.export is not None
    assert (done.export.destination, done.export.sha256, done.export.encrypted) == (
        record.url,
        record.sha256,
        True,
    )
    before = _targets()
    before.containers[0] = pending
    after = _targets()
    after.containers[0] = done
    assert finished.follow_up(before, T0) and not finished.follow_up(after, T0)
    (event,) = checkpoint_events.transition_events(before, after)
    assert event.reason == "Exported" and record.url in event.message


def test_an_archive_whose_analysis_failed_is_shown_exporting_and_followed_to_exported() -> None:
    """The agent exports an archive even when its analysis failed: the Failed container shows
    that export, and the operator follows it to its end like a Completed one's."""
    status = _targets()
    status.containers = [reconcile.mark_requested(status.containers[0], now=T0)]
    archive = ArchiveInfo(path="/ckpt/a.tar", sha256=SHA, size_bytes=10, captured_at=T0)
    failed = CaptureStatus(
        key=status.containers[0].capture_key,
        state=CaptureState.FAILED,
        reason="AnalysisFailed",
        message="the analysis failed: truncated pages-1.img",
        archive=archive,
        finished_at=T0,
        export=ExportProgress(phase=ExportPhase.EXPORTING),
    )
    status.containers[0] = reconcile.apply_capture_status(
        status.containers[0], failed, report_url="", now=T0
    )
    before = reconcile.aggregate(status, ref=REF, now=T0)
    container = before.containers[0]
    assert before.phase == Phase.FAILED and container.reason == "AnalysisFailed"
    assert container.export is not None and container.export.phase == "Exporting"
    assert finished.follow_up(before, T0)  # followed at the export's pace, not the sweep's
    record = ExportRecord(
        url="s3://evidence/a.tar",
        sha256=SHA,
        archive_sha256=SHA,
        size_bytes=10,
        encrypted=False,
        exported_at=T0 + timedelta(seconds=2),
    )
    done = failed.model_copy(
        update={"export": ExportProgress(phase=ExportPhase.EXPORTED, record=record)}
    )
    after = before.model_copy(deep=True)
    after.containers[0] = finished.apply_follow_up(container, done)
    assert after.containers[0].export is not None
    assert after.containers[0].export.destination == record.url
    assert not finished.follow_up(after, T0)
    (event,) = checkpoint_events.transition_events(before, after)
    assert event.reason == "Exported"
    # Without an archive (the kubelet call failed) there is nothing to export or show.
    no_archive = failed.model_copy(update={"archive": None, "reason": "KubeletError"})
    requested = reconcile.mark_requested(_targets().containers[0], now=T0)
    bare = reconcile.apply_capture_status(requested, no_archive, report_url="", now=T0)
    assert bare.export is None


# --- the alert receiver's RBAC ----------------------------------------------------------------


def test_the_operator_role_grants_the_alert_receiver_rules() -> None:
    docs = yaml.safe_load_all((REPO / "deploy" / "rbac" / "operator.yaml").read_text())
    (role,) = [d for d in docs if d and d["kind"] == "ClusterRole"]
    granted = {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    needed = {
        (group, resource, verb)
        for rule in RBAC_RULES
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert needed <= granted, needed - granted


def test_the_capture_request_carries_the_hold() -> None:
    container = _targets().containers[0]
    held = reconcile.capture_request(dataclasses.replace(REF, held=True), _spec(), container)
    assert held.hold is True
    assert reconcile.capture_request(REF, _spec(), container).hold is False


def test_a_finished_capture_is_followed_until_its_archive_is_deleted() -> None:
    status = _targets()
    archive = ArchiveInfo(path="/ckpt/app.tar", sha256=SHA, size_bytes=1, captured_at=T0)
    for i, container in enumerate(status.containers):
        done = CaptureStatus(
            key=container.capture_key,
            state=CaptureState.COMPLETED,
            archive=archive,
            finished_at=T0,
        )
        analysing = reconcile.apply_capture_status(container, done, report_url="", now=T0)
        status.containers[i] = reconcile.attach_summary(
            analysing, AnalysisSummary(), finished_at=T0
        )
    status = reconcile.aggregate(status, ref=REF, now=T0)
    assert status.phase == Phase.COMPLETED and finished.keep_following(status, T0)
    assert not finished.follow_up(status, T0)  # no export: polled at the slow interval
    gone = CaptureStatus(
        key=status.containers[0].capture_key,
        state=CaptureState.COMPLETED,
        archive=archive,
        archive_deleted_at=T0 + timedelta(days=7),
        archive_deleted_reason="RetentionMaxAge",
    )
    for i, container in enumerate(status.containers):
        status.containers[i] = finished.apply_follow_up(container, gone)
    assert all(c.archive_deleted for c in status.containers)
    assert not finished.keep_following(status, T0)


def test_a_late_archive_of_a_failed_capture_is_followed_shown_and_chained() -> None:
    """real-node.md B2: the agent gave up (Timeout) and watches for an archive the kubelet may
    still write. The operator keeps polling the Failed container while the agent watches, then
    shows the archive (kept, not analysed) with a Warning and its custody entry."""
    status = _targets()
    status.containers = [reconcile.mark_requested(status.containers[0], now=T0)]
    key = status.containers[0].capture_key
    until = T0 + timedelta(seconds=60)
    gave_up = CaptureStatus(
        key=key,
        state=CaptureState.FAILED,
        reason="Timeout",
        message="kubelet on node-b did not answer the checkpoint within 150 s; the agent watches",
        late_archive_watch_until=until,
        finished_at=T0,
    )
    status.containers[0] = reconcile.apply_capture_status(
        status.containers[0], gave_up, report_url="", now=T0
    )
    failed = reconcile.aggregate(status, ref=REF, now=T0)
    assert failed.phase == Phase.FAILED and failed.containers[0].late_archive_watch_until == until
    # While the agent watches (and one poll after), the failed CR is followed at the fast pace.
    assert finished.keep_following(failed, until) and finished.follow_up(failed, until)
    later = until + timedelta(minutes=1)
    assert not finished.keep_following(failed, later)  # nothing came: the daemon stops

    archive = ArchiveInfo(
        path="/ckpt/late.tar", sha256=SHA, size_bytes=2_160_269_824, captured_at=T0
    )
    fact = CustodyFact(
        action=CustodyAction.CAPTURED,
        time=T0 + timedelta(seconds=1),
        actor="agent/node-b",
        node="node-b",
        container="app",
        sha256=SHA,
        size_bytes=archive.size_bytes,
        reason="OrphanArchive",
        message="/ckpt/late.tar written after the agent gave up on the kubelet call",
    )
    landed = gave_up.model_copy(
        update={
            "archive": archive,
            "orphan_archive": True,
            "message": f"{gave_up.message}; the kubelet wrote /ckpt/late.tar 0.9 s after",
            "custody_events": [fact],
        }
    )
    kept = failed.model_copy(deep=True)
    kept.containers[0] = finished.apply_follow_up(failed.containers[0], landed)
    container = kept.containers[0]
    assert container.phase == ContainerCapturePhase.FAILED and container.reason == "Timeout"
    assert container.archive is not None and container.archive.sha256 == SHA
    assert container.orphan_archive and "0.9 s after" in container.message
    [event] = checkpoint_events.transition_events(failed, kept)
    assert (event.type, event.reason) == ("Warning", "OrphanArchive")
    assert "2.0 GiB" in event.message and SHA in event.message
    # Kept on the node, so followed for retention's Deleted fact like a completed capture's.
    assert finished.archive_kept(container) and finished.keep_following(kept, later)
    chained = checkpoint_custody.record_facts(kept, {"app": [fact]}, subject=REF.uid)
    entry = chained.custody[-1]
    assert (entry.action, entry.reason, entry.sha256) == ("Captured", "OrphanArchive", SHA)
    assert custody.verify_chain(chained.custody, REF.uid).ok


def test_captured_is_announced_when_the_archive_appears_even_between_two_polls() -> None:
    capturing = _targets()
    capturing.containers = [reconcile.mark_requested(c, now=T0) for c in capturing.containers[:1]]
    archive = ArchiveInfo(path="/ckpt/app.tar", sha256=SHA, size_bytes=1, captured_at=T0)
    done = CaptureStatus(
        key=capturing.containers[0].capture_key,
        state=CaptureState.COMPLETED,
        archive=archive,
        finished_at=T0,
    )
    completed = capturing.model_copy(deep=True)
    completed.containers[0] = reconcile.attach_summary(
        reconcile.apply_capture_status(capturing.containers[0], done, report_url="", now=T0),
        AnalysisSummary(),
        finished_at=T0,
    )
    completed = reconcile.aggregate(completed, ref=REF, now=T0)
    reasons = [e.reason for e in checkpoint_events.transition_events(capturing, completed)]
    assert reasons == ["Captured", "Completed"]
    assert checkpoint_events.transition_events(completed, completed) == []
