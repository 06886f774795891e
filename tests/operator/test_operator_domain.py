"""The operator's pure decision core: conditions, targets, the capture state machine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from forensic_checkpoint.api.agent import ArchiveInfo, CaptureState, CaptureStatus, capture_key
from forensic_checkpoint.api.conditions import ConditionStatus
from forensic_checkpoint.api.forensiccheckpoint import (
    AnalysisSummary,
    ContainerCapturePhase,
    ForensicCheckpointSpec,
    ForensicCheckpointStatus,
    Phase,
)
from forensic_checkpoint.domain.capture import checkpoint_events, reconcile, targets
from forensic_checkpoint.domain.capture.agents import (
    AgentFacts,
    AgentTarget,
    AgentUnavailable,
    usable_agent,
)
from forensic_checkpoint.domain.conditions import find_condition, set_condition
from forensic_checkpoint.domain.evidence.deletion import is_held, keys_to_delete

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
REF = reconcile.CheckpointRef(name="blog", namespace="default", uid="0f1e-uid", generation=1)
SHA = "ab" * 32


def _pod(**overrides: object) -> targets.PodFacts:
    values: dict[str, object] = {
        "name": "counters",
        "namespace": "default",
        "uid": "pod-uid",
        "phase": "Running",
        "node_name": "node-b",
        "containers": ("counter", "sidecar"),
        "running": frozenset({"counter", "sidecar"}),
    }
    values.update(overrides)
    return targets.PodFacts(**values)  # type: ignore[arg-type]


def test_condition_transition_time_moves_only_when_status_changes() -> None:
    first = set_condition(
        [],
        type_="Ready",
        status=ConditionStatus.FALSE,
        reason="Capturing",
        message="",
        generation=1,
        now=T0,
    )
    same = set_condition(
        first,
        type_="Ready",
        status=ConditionStatus.FALSE,
        reason="Analyzing",
        message="x",
        generation=1,
        now=T0 + timedelta(minutes=1),
    )
    flipped = set_condition(
        same,
        type_="Ready",
        status=ConditionStatus.TRUE,
        reason="Completed",
        message="",
        generation=1,
        now=T0 + timedelta(minutes=2),
    )
    assert find_condition(same, "Ready").last_transition_time == T0  # type: ignore[union-attr]
    assert find_condition(same, "Ready").reason == "Analyzing"  # type: ignore[union-attr]
    ready = find_condition(flipped, "Ready")
    assert ready is not None and ready.last_transition_time == T0 + timedelta(minutes=2)
    assert len(flipped) == 1


@pytest.mark.parametrize(
    ("pod", "requested", "reason"),
    [
        (None, [], targets.POD_NOT_FOUND),
        (_pod(node_name=""), [], targets.POD_NOT_SCHEDULED),
        (_pod(phase="Pending"), [], targets.POD_NOT_RUNNING),
        (_pod(phase="Succeeded"), [], targets.POD_NOT_RUNNING),
        (_pod(terminating=True), [], targets.POD_TERMINATING),
        (_pod(), ["nope"], targets.CONTAINER_NOT_FOUND),
        (_pod(running=frozenset({"counter"})), [], targets.CONTAINER_NOT_RUNNING),
        (_pod(containers=tuple(f"c{i}" for i in range(17))), [], targets.TOO_MANY_CONTAINERS),
    ],
)
def test_rejections_carry_a_reason(
    pod: targets.PodFacts | None, requested: list[str], reason: str
) -> None:
    decision = targets.resolve_targets(
        pod, namespace="default", pod_name="counters", requested=requested
    )
    assert isinstance(decision, targets.Rejection)
    assert decision.reason == reason
    assert "default/counters" in decision.message or "counter" in decision.message


def test_empty_container_list_means_all_and_a_subset_is_kept_in_order() -> None:
    all_ = targets.resolve_targets(_pod(), namespace="default", pod_name="counters", requested=[])
    assert isinstance(all_, targets.Targets)
    assert all_.containers == ("counter", "sidecar") and all_.node_name == "node-b"
    one = targets.resolve_targets(
        _pod(), namespace="default", pod_name="counters", requested=["sidecar"]
    )
    assert isinstance(one, targets.Targets) and one.containers == ("sidecar",)


def test_pod_facts_from_the_api_json() -> None:
    facts = targets.pod_facts(
        {
            "metadata": {"name": "p", "namespace": "ns", "uid": "u"},
            "spec": {"nodeName": "n1", "containers": [{"name": "a"}, {"name": "b"}]},
            "status": {
                "phase": "Running",
                "containerStatuses": [
                    {"name": "a", "state": {"running": {"startedAt": "x"}}},
                    {"name": "b", "state": {"waiting": {"reason": "CrashLoopBackOff"}}},
                ],
            },
        }
    )
    assert facts.containers == ("a", "b") and facts.running == frozenset({"a"})
    assert facts.node_name == "n1" and not facts.terminating


def test_agent_endpoint_needs_a_fresh_heartbeat() -> None:
    fresh = AgentFacts("n1", "https://10.0.0.1:9443", T0 - timedelta(seconds=5))
    stale = AgentFacts("n1", "https://10.0.0.1:9443", T0 - timedelta(minutes=5))
    assert usable_agent(fresh, node_name="n1", now=T0) == AgentTarget("n1", "https://10.0.0.1:9443")
    for facts in (stale, None, AgentFacts("n1", None, T0)):
        result = usable_agent(facts, node_name="n1", now=T0)
        assert isinstance(result, AgentUnavailable) and result.reason == "AgentUnavailable"


def _started() -> ForensicCheckpointStatus:
    decision = targets.resolve_targets(
        _pod(), namespace="default", pod_name="counters", requested=[]
    )
    return reconcile.record_targets(ForensicCheckpointStatus(), decision, ref=REF, now=T0)


def test_targets_are_recorded_with_capture_keys_before_any_request() -> None:
    status = _started()
    assert status.phase == Phase.PENDING
    assert [c.capture_key for c in status.containers] == [
        capture_key(REF.uid, "counter"),
        capture_key(REF.uid, "sidecar"),
    ]
    assert all(c.requested_at is None for c in status.containers)
    assert status.node_name == "node-b" and status.container_names == "counter,sidecar"
    ready = find_condition(status.conditions, "Ready")
    assert ready is not None and ready.status == ConditionStatus.FALSE
    assert ready.observed_generation == 1


def test_capture_request_is_identical_after_a_restart() -> None:
    spec = ForensicCheckpointSpec.model_validate(
        {"podName": "counters", "analysis": {"searches": ["RANDOM_4105_KEY"]}}
    )
    status = _started()
    # A restarted operator parses its status back from the API and builds the request again.
    reread = ForensicCheckpointStatus.model_validate(status.to_kube())
    first = reconcile.capture_request(REF, spec, status.containers[0])
    again = reconcile.capture_request(REF, spec, reread.containers[0])
    assert first == again
    assert first.key == capture_key(REF.uid, "counter")
    assert first.analysis.searches == ["RANDOM_4105_KEY"] and not first.analysis.reveal


def _capture(state: CaptureState, **extra: object) -> CaptureStatus:
    return CaptureStatus.model_validate(
        {"key": capture_key(REF.uid, "counter"), "state": state, **extra}
    )


def test_a_completed_capture_brings_its_summary() -> None:
    status = _started()
    container = reconcile.mark_requested(status.containers[0], now=T0)
    assert container.phase == ContainerCapturePhase.CAPTURING
    archive = ArchiveInfo(
        path="/var/lib/kubelet/checkpoints/x.tar", sha256=SHA, size_bytes=10 << 20, captured_at=T0
    )
    analysing = reconcile.apply_capture_status(
        container, _capture(CaptureState.ANALYZING, archive=archive), report_url="u", now=T0
    )
    assert analysing.phase == ContainerCapturePhase.ANALYZING and analysing.archive is not None
    assert analysing.summary is None
    summary = AnalysisSummary(memory_hit_count=2)
    finished = reconcile.apply_capture_status(
        analysing,
        _capture(CaptureState.COMPLETED, archive=archive, summary=summary, finishedAt=T0),
        report_url="u",
        now=T0 + timedelta(seconds=1),
    )
    assert finished.phase == ContainerCapturePhase.COMPLETED
    assert (finished.summary, finished.finished_at, finished.report_url) == (summary, T0, "u")

    status.containers = [finished, reconcile.mark_requested(status.containers[1], now=T0)]
    partial = reconcile.aggregate(status, ref=REF, now=T0)
    assert partial.phase == Phase.CAPTURING  # the slowest container decides

    other = reconcile.attach_summary(
        reconcile.apply_capture_status(
            status.containers[1],
            _capture(CaptureState.COMPLETED, archive=archive),
            report_url="u",
            now=T0,
        ),
        AnalysisSummary(),
        finished_at=T0,
    )
    status.containers = [finished, other]
    complete = reconcile.aggregate(status, ref=REF, now=T0 + timedelta(seconds=3))
    assert complete.phase == Phase.COMPLETED
    assert complete.total_size == "20.0 MiB"
    assert complete.completed_at == T0 + timedelta(seconds=3)
    assert find_condition(complete.conditions, "Ready").status == ConditionStatus.TRUE  # type: ignore[union-attr]
    assert find_condition(complete.conditions, "Captured").status == ConditionStatus.TRUE  # type: ignore[union-attr]
    assert "2 memory hit(s)" in complete.message
    events = checkpoint_events.transition_events(partial, complete)
    assert [e.reason for e in events][-1] == "Completed"
    assert checkpoint_events.transition_events(complete, complete) == []


def test_stage_timings_are_copied_and_the_report_delay_measured_once_finished() -> None:
    """The agent's split arrives as it is; the operator adds its own delay (from the agent
    finishing the job to this status write) only for a finished job."""
    container = reconcile.mark_requested(_started().containers[0], now=T0)
    timings = {"queuedMs": 5, "kubeletMs": 13000, "hashMs": 1300}
    analysing = reconcile.apply_capture_status(
        container, _capture(CaptureState.ANALYZING, timings=timings), report_url="u", now=T0
    )
    assert analysing.timings is not None
    assert (analysing.timings.kubelet_ms, analysing.timings.report_ms) == (13000, None)
    done = reconcile.apply_capture_status(
        analysing,
        _capture(CaptureState.COMPLETED, timings={**timings, "analysisMs": 4000}, finishedAt=T0),
        report_url="u",
        now=T0 + timedelta(milliseconds=750),
    )
    assert done.timings is not None
    assert (done.timings.analysis_ms, done.timings.report_ms) == (4000, 750)
    wire = done.model_dump(by_alias=True, exclude_none=True)["timings"]
    assert wire == {**timings, "analysisMs": 4000, "reportMs": 750}


def test_an_agent_failure_fails_the_checkpoint_with_the_kubelet_reason() -> None:
    status = _started()
    container = reconcile.mark_requested(status.containers[0], now=T0)
    failed = reconcile.apply_capture_status(
        container,
        _capture(
            CaptureState.FAILED,
            reason="KubeletForbidden",
            message="kubelet refused: missing create nodes/checkpoint",
            kubelet_status_code=403,
        ),
        report_url="u",
        now=T0,
    )
    status.containers = [failed, status.containers[1]]
    status = reconcile.fail(
        reconcile.aggregate(status, ref=REF, now=T0),
        reason="KubeletForbidden",
        message="same for the sidecar",
        ref=REF,
        now=T0,
    )
    assert status.phase == Phase.FAILED and status.reason == "KubeletForbidden"
    assert status.containers[0].kubelet_status_code == 403
    ready = find_condition(status.conditions, "Ready")
    assert ready is not None and ready.reason == "KubeletForbidden"
    assert "nodes/checkpoint" in status.message


def test_a_rejection_fails_at_once_with_an_event() -> None:
    status = reconcile.record_targets(
        ForensicCheckpointStatus(),
        targets.Rejection(targets.POD_NOT_FOUND, "pod default/x does not exist"),
        ref=REF,
        now=T0,
    )
    assert status.phase == Phase.FAILED and status.reason == "PodNotFound"
    events = checkpoint_events.transition_events(ForensicCheckpointStatus(), status)
    assert [(e.type, e.reason) for e in events] == [("Warning", "PodNotFound")]


def test_invalid_regex_is_rejected() -> None:
    spec = ForensicCheckpointSpec.model_validate(
        {"podName": "p", "analysis": {"regexes": ["ok.*", "([unclosed"]}}
    )
    problem = reconcile.check_spec(spec)
    assert (
        problem is not None and problem.reason == "InvalidSpec" and "[unclosed" in problem.message
    )


@pytest.mark.parametrize("expr", [r"(a)\1", r"(?=tok)\w+"])
def test_a_regex_the_agents_engine_cannot_run_is_rejected_before_any_capture(expr: str) -> None:
    """Valid for Python's backtracking ``re`` but not for RE2, which the agent runs: the
    operator refuses it before the container is frozen, not after the dump."""
    spec = ForensicCheckpointSpec.model_validate({"podName": "p", "analysis": {"regexes": [expr]}})
    problem = reconcile.check_spec(spec)
    assert problem is not None and problem.reason == "InvalidSpec"
    assert "RE2 syntax" in problem.message


def test_overdue_uses_the_kubelet_timeout_plus_grace() -> None:
    spec = ForensicCheckpointSpec(pod_name="p", timeout_seconds=600)
    container = reconcile.mark_requested(_started().containers[0], now=T0)
    grace = timedelta(seconds=30)
    assert not reconcile.overdue(container, spec, now=T0 + timedelta(seconds=629), grace=grace)
    assert reconcile.overdue(container, spec, now=T0 + timedelta(seconds=631), grace=grace)


def test_overdue_counts_from_the_kubelets_runtime_request_timeout_for_short_timeouts() -> None:
    """The kubelet raises timeoutSeconds 60 to its runtimeRequestTimeout (2 min): the agent
    may rightly still be waiting at 91 s (real-node.md B1)."""
    spec = ForensicCheckpointSpec(pod_name="p", timeout_seconds=60)
    container = reconcile.mark_requested(_started().containers[0], now=T0)
    grace = timedelta(seconds=30)
    assert not reconcile.overdue(container, spec, now=T0 + timedelta(seconds=91), grace=grace)
    assert not reconcile.overdue(container, spec, now=T0 + timedelta(seconds=149), grace=grace)
    assert reconcile.overdue(container, spec, now=T0 + timedelta(seconds=151), grace=grace)


def test_hold_and_deletion_keys() -> None:
    assert is_held({"labels": {"forensic-checkpoint.dev/hold": "true"}})
    assert is_held({"annotations": {"forensic-checkpoint.dev/hold": "True"}})
    assert not is_held({"labels": {"forensic-checkpoint.dev/hold": "false"}})
    status = _started()
    status.containers[1].archive_deleted = True
    assert keys_to_delete(status) == [capture_key(REF.uid, "counter")]
    assert keys_to_delete(None) == []


def test_metrics_count_final_phases_once() -> None:
    from forensic_checkpoint.controller import metrics

    def completed_count() -> float:
        value = metrics.CHECKPOINTS_FINISHED.labels(phase="Completed", reason="Completed")
        return float(value._value.get())

    before = completed_count()
    running = _started()
    done = running.model_copy(deep=True)
    done.phase = Phase.COMPLETED
    done.reason = "Completed"
    done.completed_at = T0 + timedelta(seconds=7)
    metrics.observe_transition(running, done, created="2026-11-28T12:00:00Z")
    metrics.observe_transition(done, done, created="2026-11-28T12:00:00Z")
    assert completed_count() == before + 1


def test_a_completed_capture_of_an_older_agent_completes_without_a_summary() -> None:
    # An agent from before CaptureStatus.summary: the report stays at reportUrl.
    container = reconcile.mark_requested(_started().containers[0], now=T0)
    done = reconcile.apply_capture_status(
        container, _capture(CaptureState.COMPLETED), report_url="u", now=T0
    )
    assert (done.phase, done.summary, done.report_url) == (
        ContainerCapturePhase.COMPLETED,
        None,
        "u",
    )
