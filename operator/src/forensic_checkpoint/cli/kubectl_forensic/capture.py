"""``kubectl forensic capture POD``: create a ForensicCheckpoint, optionally wait for it with
live progress."""

from __future__ import annotations

import argparse
import time
from typing import Any

from pydantic import ValidationError

from forensic_checkpoint.api.forensiccheckpoint import (
    AnalysisSpec,
    CaptureReasonSpec,
    ForensicCheckpoint,
    ForensicCheckpointSpec,
    ForensicCheckpointStatus,
    Phase,
)
from forensic_checkpoint.cli.kubectl_forensic.context import get_checkpoint, namespace
from forensic_checkpoint.errors import ClusterError, ConfigError
from forensic_checkpoint.k8s.checkpoints import ForensicCheckpoints
from forensic_checkpoint.k8s.client import ApiClient

EXIT_FAILED = 1


def run_plugin(api: ApiClient, args: argparse.Namespace) -> int:
    ns = namespace(args.namespace, args.kubeconfig)
    created = ForensicCheckpoints(api).create(checkpoint_from_args(args, ns))
    name = str(created.metadata["name"])
    print(f"forensiccheckpoint.{ForensicCheckpoint.crd.group}/{name} created")
    if not args.wait:
        return 0
    status = wait(api, ns, name, args.wait_timeout)
    print_outcome(name, status)
    return 0 if status.phase == Phase.COMPLETED else EXIT_FAILED


def checkpoint_from_args(args: argparse.Namespace, namespace: str) -> ForensicCheckpoint:
    """The ForensicCheckpoint the flags ask for (named by the API server after the pod)."""
    fields: dict[str, Any] = {"pod_name": args.pod, "containers": list(args.container)}
    if args.timeout_seconds:
        fields["timeout_seconds"] = args.timeout_seconds
    try:
        spec = ForensicCheckpointSpec(
            **fields,
            analysis=AnalysisSpec(searches=list(args.search), regexes=list(args.regex)),
            reason=CaptureReasonSpec(text=args.reason) if args.reason else None,
        )
    except ValidationError as exc:
        raise ConfigError(f"invalid request: {_first_error(exc)}") from exc
    return ForensicCheckpoint(
        metadata={"generateName": f"{args.pod[:50]}-", "namespace": namespace}, spec=spec
    )


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"])
    return f"{where}: {error['msg']}"


def progress_line(status: ForensicCheckpointStatus) -> str:
    """One line for the live display: overall phase, then each container's phase."""
    parts = [str(status.phase)]
    parts.extend(f"{c.name}: {c.phase}" for c in status.containers)
    if status.node_name:
        parts.append(f"node {status.node_name}")
    return "  ".join(parts)


def wait(api: ApiClient, namespace: str, name: str, timeout: float) -> ForensicCheckpointStatus:
    """Poll until the phase is terminal, showing progress on stderr (rich, when a terminal)."""
    from rich.console import Console

    console = Console(stderr=True)
    deadline = time.monotonic() + timeout
    last = ""
    with console.status(f"waiting for {name}") as live:
        while True:
            status = get_checkpoint(api, namespace, name).status or ForensicCheckpointStatus()
            line = progress_line(status)
            live.update(f"{name}: {line}")
            if line != last and not console.is_terminal:
                console.print(f"{name}: {line}", highlight=False)  # a log when piped
            last = line
            if status.phase.terminal:
                return status
            if time.monotonic() > deadline:
                raise ClusterError(f"{name} is still {status.phase} after {timeout:.0f} s")
            time.sleep(1.0)


def print_outcome(name: str, status: ForensicCheckpointStatus) -> None:
    if status.phase == Phase.COMPLETED:
        frozen = f", frozen {status.frozen_time}" if status.frozen_time else ""
        print(f"{name}: Completed ({status.total_size}{frozen})")
        return
    print(f"{name}: {status.phase} {status.reason or ''}: {status.message}")
    for container in status.containers:
        if container.remediation:
            print(f"  {container.name}: {container.remediation}")
