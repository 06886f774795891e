"""The scale benchmark's fake agents answer the operator's waiting status request as the real
agent does (``?waitWhile=Queued,Capturing``): without it every status request of a capturing
container failed, and no capture of the benchmark ever completed."""

from __future__ import annotations

import time

from forensic_checkpoint.api.agent import CaptureRequest, CaptureState
from forensic_checkpoint_dev.fake_agents import FakeCaptureService

WAITING = (CaptureState.QUEUED, CaptureState.CAPTURING)


def _request() -> CaptureRequest:
    return CaptureRequest(
        key="uid-1-app",
        checkpoint_uid="uid-1",
        checkpoint_namespace="ns",
        checkpoint_name="c",
        pod_namespace="ns",
        pod_name="web",
        container="app",
    )


def test_a_waiting_status_request_answers_when_the_capture_ends() -> None:
    service = FakeCaptureService("node-a", capture_seconds=0.2)
    service.submit(_request())
    started = time.monotonic()
    status = service.status("uid-1-app", wait_while=WAITING, timeout=5)
    assert status.state is CaptureState.COMPLETED
    assert time.monotonic() - started < 2


def test_without_wait_or_past_the_timeout_it_answers_at_once() -> None:
    service = FakeCaptureService("node-a", capture_seconds=30)
    service.submit(_request())
    assert service.status("uid-1-app").state is CaptureState.QUEUED
    status = service.status("uid-1-app", wait_while=WAITING, timeout=0.1)
    assert status.state is CaptureState.QUEUED
