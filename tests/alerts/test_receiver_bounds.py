"""The receiver's bounds over real HTTP (issue 15, item 11): deeply nested JSON is a 400, not a
500; a body over the byte cap is refused with 413 and a metric, however few alerts it holds;
and a storm's notification of thousands of alerts is decided, all of it, while the event loop
that the operator shares with the receiver keeps serving. The same against a real API server,
with captures up to the cap: test_receiver_storm_cluster.py."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry
from tests.alerts.helpers import MemoryBackend, payload, policy, storm
from tests.alerts.storm_client import one_go, post_storm
from tests.alerts.test_receiver_http import AM, FALCO, TOKEN, cfg, post, run

from forensic_checkpoint.controller.alerts.body import (
    MAX_DEPTH,
    VALIDATE_SLICE,
    BodyRefused,
    decode,
)
from forensic_checkpoint.controller.alerts.config import DEFAULT_MAX_BODY_BYTES
from forensic_checkpoint.controller.alerts.receiver import parse_alertmanager
from forensic_checkpoint.controller.alerts.server import AlertServer


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    return path


def _refused(registry: CollectorRegistry, route: str, reason: str) -> float:
    value = registry.get_sample_value(
        "forensic_checkpoint_alert_bodies_refused_total", {"route": route, "reason": reason}
    )
    return value or 0.0


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 5_000, 100_000])
def test_deeply_nested_json_is_a_400(token_file: Path, depth: int) -> None:
    registry = CollectorRegistry()

    async def scenario(server: AlertServer, session: aiohttp.ClientSession) -> None:
        top = ("[" * depth + "]" * depth).encode()
        status, body = await post(server, session, AM, top)
        assert (status, body["error"]) == (400, f"JSON nested deeper than {MAX_DEPTH} levels")
        event = json.dumps(payload("falcosidekick-terminal-shell.json"))
        inner = event.replace('"output_fields": {', f'"output_fields": {{"deep": {top.decode()},')
        assert inner != event
        status, body = await post(server, session, FALCO, inner.encode())
        assert status == 400, body
        assert "nested deeper" in body["error"]
        status, _ = await post(server, session, AM, payload("alertmanager-firing-group.json"))
        assert status == 200  # and the receiver keeps serving

    run(scenario, cfg(token_file), registry=registry)
    assert _refused(registry, AM, "TooDeep") == 1
    assert _refused(registry, FALCO, "TooDeep") == 1


def test_a_6500_alert_body_is_decided_while_the_loop_keeps_serving(
    token_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Before: refused with 413 (more than 1,000 alerts), the whole notification lost. Now
    every alert is decided within the default byte cap, and /healthz keeps answering."""
    caplog.set_level("INFO", logger="forensic_checkpoint.alerts")
    backend = MemoryBackend([policy("prod-only", match={"namespaces": ["prod"]})])
    body = json.dumps(storm(6_500, namespace="default")).encode()
    assert 4 * 1024 * 1024 < len(body) < DEFAULT_MAX_BODY_BYTES

    async def scenario(server: AlertServer, _session: aiohttp.ClientSession) -> None:
        sent = await asyncio.to_thread(post_storm, server.url, TOKEN, body)
        assert sent.status == 200, sent.answer
        assert sent.answer["received"] == len(sent.answer["decisions"]) == 6_500
        assert sent.reasons == {"NamespaceExcluded": 6_500}
        # /healthz is polled from another process (``post_storm`` keeps the test process's own
        # heap out of the garbage collections the body sets off; see there). Deciding the
        # alerts takes about half a second; the loop must not stall for it (storm_client).
        again = json.dumps(storm(6_500, namespace="default", first=6_500)).encode()
        with one_go():
            before = await asyncio.to_thread(post_storm, server.url, TOKEN, again)
        assert before.reasons == sent.reasons
        sent.assert_loop_kept_serving(before)

    run(scenario, cfg(token_file), backend)


def test_a_schema_violation_deep_in_a_storm_names_its_alert() -> None:
    """Alerts are validated in slices; the error still names the alert's place in the body."""
    notification = storm(3 * VALIDATE_SLICE, namespace="default")
    del notification["alerts"][VALIDATE_SLICE + 51]["fingerprint"]
    notification["alerts"][2 * VALIDATE_SLICE]["status"] = "pending"
    with pytest.raises(BodyRefused) as refused:
        decode(json.dumps(notification).encode(), parse_alertmanager)
    assert refused.value.status == 400
    assert refused.value.answer["details"] == [
        f"alerts.{VALIDATE_SLICE + 51}.fingerprint: Field required"
    ]
    del notification["alerts"][VALIDATE_SLICE + 51]
    with pytest.raises(BodyRefused) as refused:
        decode(json.dumps(notification).encode(), parse_alertmanager)
    (detail,) = refused.value.answer["details"]
    assert detail.startswith(f"alerts.{2 * VALIDATE_SLICE - 1}.status: Input should be")


def test_only_a_body_over_the_byte_cap_is_refused(token_file: Path) -> None:
    registry = CollectorRegistry()
    body = json.dumps(storm(2_000, namespace="default")).encode()

    async def scenario(server: AlertServer, session: aiohttp.ClientSession) -> None:
        status, answer = await _post_large(server, session, body)
        assert status == 413
        assert f"body ({len(body)} bytes) over the limit of 1048576 bytes" in answer["error"]
        assert "--alerts-max-body" in answer["error"]

    run(scenario, cfg(token_file, max_body_bytes=1024 * 1024), registry=registry)
    assert _refused(registry, AM, "TooLarge") == 1


async def _post_large(
    server: AlertServer, session: aiohttp.ClientSession, body: bytes
) -> tuple[int, dict[str, Any]]:
    """As ``post``, streamed (aiohttp warns that raw bytes this large would hold its loop)."""
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
    async with session.post(server.url + AM, data=io.BytesIO(body), headers=headers) as response:
        return response.status, await response.json()
