"""Classification of real kubelet/runtime failure texts (see data/README.md for provenance)."""

from __future__ import annotations

from pathlib import Path

import pytest

from forensic_checkpoint.domain.failures.classify import CaptureFailure, classify_capture_failure
from forensic_checkpoint.domain.failures.criu_log import criu_log_excerpt, criu_log_path
from forensic_checkpoint.domain.failures.model import FailureReason, TransportFailure
from forensic_checkpoint.domain.failures.rules import CRIU_LOG_RULES, KUBELET_RULES

DATA = Path(__file__).parent / "data"
CONTAINERD_LOG = "/run/containerd/io.containerd.runtime.v2.task/k8s.io/<id>/criu-dump.log"
CRIO_LOG = "/var/lib/containers/storage/overlay-containers/<id>/userdata/dump.log"


def text(name: str) -> str:
    return (DATA / name).read_text()


def kubelet_500(desc: str, ref: str = "default/ckpt-failures/tcp") -> str:
    """The kubelet's 500 body around a CRI error (kubelet server.go format)."""
    return f"checkpointing of {ref} failed (rpc error: code = Unknown desc = {desc})"


def classify(status: int, body: str, log: str | None = None) -> CaptureFailure:
    return classify_capture_failure(status_code=status, body=body, criu_log=log)


def test_recorded_kubelet_body_matches_our_composition() -> None:
    # The recorder's full kubelet body and ours from the recorded desc must be the same text,
    # or every test below builds bodies the kubelet would never send.
    assert kubelet_500(text("containerd-criu-failed.desc.txt")) == text(
        "kubelet-500-containerd-tcp.body.txt"
    )


@pytest.mark.parametrize(
    ("desc", "log", "reason", "needle"),
    [
        (
            "containerd-criu-failed.desc.txt",
            "containerd-tcp.dump.log",
            FailureReason.ESTABLISHED_TCP,
            "tcp-established",
        ),
        (
            "crio-criu-failed.desc.txt",
            "containerd-tcp.dump.log",  # CRI-O's log has the same lines with other PIDs
            FailureReason.ESTABLISHED_TCP,
            "tcp-established",
        ),
        (
            "containerd-criu-failed.desc.txt",
            "containerd-ghost.dump.log",
            FailureReason.GHOST_FILE_TOO_LARGE,
            "ghost-limit 4194304",
        ),
        (
            "crio-criu-failed.desc.txt",
            "crio-ghost.dump.log",
            FailureReason.GHOST_FILE_TOO_LARGE,
            "ghost-limit 4194304",
        ),
        (
            "containerd-criu-failed.desc.txt",
            "containerd-ptrace-inside.dump.log",
            FailureReason.TRACED_TASK,
            "TracerPid:",
        ),
        (
            "crio-criu-failed.desc.txt",
            "containerd-ptrace-strace.dump.log",
            FailureReason.TRACED_TASK,
            "TracerPid:",
        ),
    ],
)
def test_criu_failures_are_refined_by_the_dump_log(
    desc: str, log: str, reason: FailureReason, needle: str
) -> None:
    failure = classify(500, kubelet_500(text(desc)), text(log))
    assert failure.reason is reason
    assert needle in failure.remediation
    assert "container tcp of pod default/ckpt-failures" in failure.message
    assert failure.excerpt, "the CRIU lines that show the cause are kept"
    assert failure.criu_log_path in (CONTAINERD_LOG, CRIO_LOG)
    assert not failure.retryable


def test_established_tcp_excerpt_keeps_the_error_and_the_lines_before_it() -> None:
    failure = classify(
        500, kubelet_500(text("containerd-criu-failed.desc.txt")), text("containerd-tcp.dump.log")
    )
    lines = failure.excerpt.splitlines()
    cause = next(i for i, line in enumerate(lines) if "Connected TCP socket" in line)
    assert "sockets: Searching for socket 0x35b28 family 2" in lines[cause - 1]
    assert "22295 fdinfo 4" in lines[cause - 2]
    assert any("Dumping FAILED" in line for line in lines)


def test_ghost_file_message_names_the_file_and_its_size() -> None:
    failure = classify(
        500, kubelet_500(text("crio-criu-failed.desc.txt")), text("crio-ghost.dump.log")
    )
    assert "/var/tmp/scratch.bin" in failure.message
    assert "2097152 bytes" in failure.message
    assert "(4 MiB)" in failure.remediation


def test_traced_task_names_the_traced_process_and_collapses_the_retries() -> None:
    log = text("containerd-ptrace-inside.dump.log")
    # The recorder elided the 101 retries; put real repetitions back to test the collapse.
    retry = [line for line in log.splitlines() if line.startswith("(00.154")]
    repeated = log.replace(retry[1], "\n".join([retry[1]] + retry * 50))
    failure = classify(500, kubelet_500(text("containerd-criu-failed.desc.txt")), repeated)
    assert failure.reason is FailureReason.TRACED_TASK
    assert "Process 22387 (python3)" in failure.message
    assert failure.excerpt.count("Unable to interrupt task: 22387") == 1
    assert "Timeout reached" in failure.excerpt


@pytest.mark.parametrize(
    ("desc", "expected"),
    [("containerd-criu-failed.desc.txt", CONTAINERD_LOG), ("crio-criu-failed.desc.txt", CRIO_LOG)],
)
def test_criu_log_path_is_taken_from_either_runtime_error(desc: str, expected: str) -> None:
    assert criu_log_path(kubelet_500(text(desc))) == expected


@pytest.mark.parametrize("desc", ["containerd-criu-failed.desc.txt", "crio-criu-failed.desc.txt"])
def test_criu_failure_without_a_readable_log_says_where_the_log_is(desc: str) -> None:
    failure = classify(500, kubelet_500(text(desc)))
    assert failure.reason is FailureReason.RUNTIME_ERROR
    assert failure.criu_log_path is not None
    assert failure.criu_log_path in failure.remediation
    assert failure.excerpt == ""


def test_a_successful_dump_log_does_not_invent_a_cause() -> None:
    # A log with only the harmless rlimit error must not be read as any specific reason.
    failure = classify(
        500,
        kubelet_500(text("containerd-criu-failed.desc.txt")),
        text("podman-success-head.dump.log"),
    )
    assert failure.reason is FailureReason.RUNTIME_ERROR
    assert "RLIMIT_NOFILE" not in failure.message
    assert "RLIMIT_NOFILE" not in failure.excerpt
    assert "Would overwrite RPC settings with values from /etc/criu/runc.conf" in failure.excerpt


def test_memfd_secret_is_recognised_by_the_kernel_name() -> None:
    # No failing CRIU log of a memfd_secret dump was recorded (criu#2188). CRIU prints the
    # mapping's path as the kernel shows it; this is a real maps line of such a mapping.
    maps_line = text("secretmem.proc-maps.txt").strip()
    log = f"(00.010000) {maps_line}\n(00.020000) Error (criu/cr-dump.c:2128): Dumping FAILED.\n"
    failure = classify(500, kubelet_500(text("containerd-criu-failed.desc.txt")), log)
    assert failure.reason is FailureReason.MEMFD_SECRET
    assert "/secretmem (deleted)" in failure.excerpt


@pytest.mark.parametrize(
    ("desc", "reason", "needle"),
    [
        ("containerd-exited.desc.txt", FailureReason.CONTAINER_NOT_RUNNING, "container runs"),
        ("containerd-created.desc.txt", FailureReason.CONTAINER_NOT_RUNNING, "container runs"),
        ("crio-not-running.desc.txt", FailureReason.CONTAINER_NOT_RUNNING, "container runs"),
        ("containerd-disabled.desc.txt", FailureReason.CHECKPOINTING_DISABLED, "enable_criu"),
        ("crio-disabled.desc.txt", FailureReason.CHECKPOINTING_DISABLED, "enable_criu_support"),
        ("containerd-criu-missing.desc.txt", FailureReason.CRIU_MISSING, "restart containerd"),
    ],
)
def test_runtime_refusals(desc: str, reason: FailureReason, needle: str) -> None:
    failure = classify(500, kubelet_500(text(desc)))
    assert failure.reason is reason
    assert needle in failure.remediation
    assert failure.criu_log_path is None


def test_runtime_without_the_cri_call_is_unsupported() -> None:
    body = f"checkpointing of default/p/c failed ({text('cri-unimplemented.error.txt')})"
    failure = classify(500, body)
    assert failure.reason is FailureReason.RUNTIME_UNSUPPORTED
    assert "containerd >= 2.0" in failure.remediation


@pytest.mark.parametrize(
    ("status", "name", "reason"),
    [
        (404, "kubelet-404-gate-off.body.txt", FailureReason.CHECKPOINTING_DISABLED),
        (404, "kubelet-404-pod.body.txt", FailureReason.CONTAINER_NOT_FOUND),
        (404, "kubelet-404-container.body.txt", FailureReason.CONTAINER_NOT_FOUND),
        (403, "kubelet-403.body.txt", FailureReason.KUBELET_FORBIDDEN),
    ],
)
def test_kubelet_statuses(status: int, name: str, reason: FailureReason) -> None:
    assert classify(status, text(name)).reason is reason


def test_gate_off_remediation_names_the_feature_gate() -> None:
    failure = classify(404, text("kubelet-404-gate-off.body.txt"))
    assert "ContainerCheckpoint: true" in failure.remediation


def test_forbidden_names_the_user_and_the_missing_permission() -> None:
    failure = classify(403, text("kubelet-403.body.txt"))
    assert "user kube-apiserver-kubelet-client" in failure.message
    assert "nodes/checkpoint" in failure.message
    assert 'resources: ["nodes/checkpoint"], verbs: ["create"]' in failure.remediation


def test_unauthorized() -> None:
    failure = classify(401, "Unauthorized")
    assert failure.reason is FailureReason.KUBELET_UNAUTHORIZED
    assert "authentication.webhook.enabled" in failure.remediation


def test_the_same_text_under_another_status_is_not_that_reason() -> None:
    # "404 page not found" only means the gate is off when the status is 404 too.
    failure = classify(502, text("kubelet-404-gate-off.body.txt"))
    assert failure.reason is FailureReason.KUBELET_ERROR
    assert failure.retryable


@pytest.mark.parametrize(
    ("transport", "reason", "retryable"),
    [
        (TransportFailure.TIMEOUT, FailureReason.TIMEOUT, True),
        (TransportFailure.TLS, FailureReason.KUBELET_TLS_ERROR, False),
        (TransportFailure.REFUSED, FailureReason.KUBELET_UNREACHABLE, True),
    ],
)
def test_transport_failures(
    transport: TransportFailure, reason: FailureReason, retryable: bool
) -> None:
    failure = classify_capture_failure(status_code=None, transport=transport)
    assert (failure.reason, failure.retryable) == (reason, retryable)


def test_unknown_runtime_error_keeps_its_words_on_one_line() -> None:
    failure = classify(500, "checkpointing of a/b/c failed (something\nnew)")
    assert failure.reason is FailureReason.RUNTIME_ERROR
    assert "something new" in failure.message


@pytest.mark.parametrize("cap", [256, 600, 4096])
def test_excerpt_never_exceeds_its_cap(cap: int) -> None:
    log = text("containerd-ptrace-inside.dump.log") + text("containerd-ghost.dump.log") * 40
    excerpt = criu_log_excerpt(log, None, max_bytes=cap)
    assert 0 < len(excerpt.encode()) <= cap


def test_excerpt_prefers_the_cause_when_the_cap_is_tight() -> None:
    log = text("containerd-tcp.dump.log")
    tcp_rule = next(r for r in CRIU_LOG_RULES if r.reason is FailureReason.ESTABLISHED_TCP)
    excerpt = criu_log_excerpt(log, tcp_rule.pattern, max_bytes=200)
    assert "Connected TCP socket" in excerpt
    assert "Dumping FAILED" not in excerpt


def test_every_rule_names_its_source() -> None:
    for rule in KUBELET_RULES + CRIU_LOG_RULES:
        assert rule.source.strip(), rule
        assert rule.remediation.strip(), rule


@pytest.mark.parametrize(
    ("status", "reason"),
    [(401, FailureReason.KUBELET_UNAUTHORIZED), (403, FailureReason.KUBELET_FORBIDDEN)],
)
def test_status_alone_decides_when_the_body_is_empty(status: int, reason: FailureReason) -> None:
    failure = classify(status, "")
    assert failure.reason is reason
    assert "the caller" in failure.message or status == 401


def test_values_from_inside_the_container_are_bounded() -> None:
    # A file name is chosen by whoever runs in the container; it must not flood the condition.
    long_name = "/tmp/" + "A" * 3000
    log = text("crio-ghost.dump.log").replace("/var/tmp/scratch.bin", long_name)
    failure = classify(500, kubelet_500(text("crio-criu-failed.desc.txt")), log)
    assert failure.reason is FailureReason.GHOST_FILE_TOO_LARGE
    assert len(failure.message) < 600


@pytest.mark.parametrize(
    ("line", "reason", "option"),
    [
        # CRIU's own texts (criu/file-lock.c, criu/sk-inet.c); no recorded runtime run has them.
        (
            "Error (criu/file-lock.c:110): Some file locks are hold by dumping tasks! "
            "You can try --file-locks to dump them.",
            FailureReason.FILE_LOCKS,
            "file-locks",
        ),
        (
            "Error (criu/sk-inet.c:188): In-flight connection (l) for 35b28",
            FailureReason.IN_FLIGHT_TCP,
            "skip-in-flight",
        ),
    ],
)
def test_criu_source_texts_point_to_the_option(
    line: str, reason: FailureReason, option: str
) -> None:
    log = f"(00.044770) {line}\n(00.121302) Error (criu/cr-dump.c:2128): Dumping FAILED.\n"
    failure = classify(500, kubelet_500(text("containerd-criu-failed.desc.txt")), log)
    assert failure.reason is reason
    assert f"`{option}`" in failure.remediation
