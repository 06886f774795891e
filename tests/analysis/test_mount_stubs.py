"""containerd's rootfs-diff holds empty stubs for the kubelet's mount destinations (issue 16):
they are listed apart as ``mount_stubs``, not as changed files, in the report, the agent's
summary and the findings, while content at a mount destination stays a change."""

from __future__ import annotations

import pytest
from tests.analysis.sample_data import revealed

from forensic_checkpoint.agent.capture.summary import summarize
from forensic_checkpoint.analysis.model.report import RootfsEntry
from forensic_checkpoint.analysis.sections.rootfs import split_mount_stubs


def _paths(entries: list[RootfsEntry]) -> list[str]:
    return [e.path for e in entries]


@pytest.mark.parametrize(
    ("sample", "stubs", "changed"),
    [
        # the README of the samples: "etc/hosts (empty, mode 0755; the mount point containerd
        # creates for its /etc/hosts bind mount)"; /etc has nothing else below it
        (
            "counter-blog-containerd",
            ["/etc", "/etc/hosts"],
            ["/home", "/home/counter", "/home/counter/logfile", "/home/counter/test-file"],
        ),
        # the ServiceAccount token volume at /var/run/secrets/... (spec.dump), which the kernel's
        # mount table names /run/secrets/... (/var/run is a symlink); /etc also holds the
        # attacker's cron file, so it stays a change
        (
            "attack-revshell",
            [
                "/etc/hosts",
                "/run",
                "/run/secrets",
                "/run/secrets/kubernetes.io",
                "/run/secrets/kubernetes.io/serviceaccount",
            ],
            ["/etc", "/etc/cron.d", "/etc/cron.d/persist", "/root", "/root/.ssh"],
        ),
    ],
)
def test_containerd_mount_stubs_are_not_changes(
    sample: str, stubs: list[str], changed: list[str]
) -> None:
    report = revealed(sample)
    assert _paths(report.rootfs.mount_stubs) == stubs
    assert _paths(report.rootfs.changed)[: len(changed)] == changed
    assert not set(stubs) & set(_paths(report.rootfs.changed))
    summary = summarize(report, pod="p", namespace="n", container="c")
    assert not set(stubs) & set(summary.files.changed_paths)
    assert not any(f.evidence.path in stubs for f in report.findings), (
        "a finding about a mount stub"
    )


def test_counter_blog_containerd_counts_only_its_two_written_files() -> None:
    summary = summarize(revealed("counter-blog-containerd"), pod="p", namespace="n", container="c")
    assert summary.files.changed_count == 2
    assert sorted(summary.files.changed_paths) == [
        "/home/counter/logfile",
        "/home/counter/test-file",
    ]


def _entry(path: str, kind: str = "file", size: int = 0) -> RootfsEntry:
    return RootfsEntry(path=path, type=kind, size_bytes=size, mode="0o644")


def test_content_at_a_mount_destination_stays_a_change() -> None:
    entries = [
        _entry("/etc", "dir"),
        _entry("/etc/hosts", size=120),  # written into the upper layer: worth a look
        _entry("/dev", "dir"),
        _entry("/dev/termination-log"),  # the kubelet's, empty
        _entry("/config", "dir"),  # a ConfigMap volume with a file under it in the diff
        _entry("/config/app.yaml", size=10),
        _entry("/data", "dir"),  # an emptyDir volume's directory, nothing below
        _entry("/opt", "dir"),  # not above any mount: a change however empty
        _entry("/var", "dir"),  # above /var/log/app but nothing below it in the diff
    ]
    destinations = [
        "/etc/hosts",
        "/dev/termination-log",
        "/config",
        "/data",
        "/var/log/app",
        "/proc",
    ]
    changed, stubs = split_mount_stubs(entries, destinations)
    assert _paths(stubs) == ["/dev", "/dev/termination-log", "/data"]
    assert _paths(changed) == ["/etc", "/etc/hosts", "/config", "/config/app.yaml", "/opt", "/var"]
