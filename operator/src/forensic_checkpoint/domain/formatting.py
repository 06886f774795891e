"""Sizes and durations as the printer columns and event messages show them (pure)."""

from __future__ import annotations

from forensic_checkpoint.api.forensiccheckpoint import AnalysisSummary


def human_size(size_bytes: int) -> str:
    """``12.3 MiB`` for the printer column."""
    value = float(size_bytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def frozen_time(summary: AnalysisSummary | None) -> str:
    """CRIU's ``frozen_time`` (microseconds, ``dumpStats.frozenTime``) as ``149.6ms`` or
    ``13.2s``: how long the container's tasks were frozen for the dump. Empty when unknown."""
    micros = (summary.dump_stats if summary is not None else {}).get("frozenTime")
    if micros is None:
        return ""
    return human_duration(micros)


def human_duration(micros: int) -> str:
    """Microseconds as a short Kubernetes-style duration: ``850us``, ``149.6ms``, ``13.2s``."""
    if micros < 1000:
        return f"{micros}us"
    if micros < 1_000_000:
        return f"{micros / 1000:.1f}ms"
    return f"{micros / 1_000_000:.1f}s"


def with_remediation(message: str, remediation: str) -> str:
    """The status/condition message: what went wrong, then what to do (both in one line, as
    ``kubectl get -o wide`` and ``kubectl wait`` show only the message)."""
    text = f"{message} Remediation: {remediation}" if remediation else message
    return text[:1024]
