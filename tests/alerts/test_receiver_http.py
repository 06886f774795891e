"""The receiver over real HTTP(S): auth, size and schema answers, decisions in the body,
metrics by reason. The cluster side is an in-memory backend here; see test_receiver_cluster."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
from prometheus_client import CollectorRegistry
from tests.alerts.helpers import MemoryBackend, payload, policy

from forensic_checkpoint.controller.alerts import AlertReceiverConfig, serve_alerts
from forensic_checkpoint.controller.alerts.server import AlertServer
from forensic_checkpoint.domain.alerts.policy import Limits
from forensic_checkpoint.errors import ConfigError

TOKEN = "test-token-0123456789abcdef"
AM = "/v1/alerts/alertmanager"
FALCO = "/v1/alerts/falcosidekick"


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    return path


Scenario = Callable[[AlertServer, aiohttp.ClientSession], Awaitable[None]]


def run(
    scenario: Scenario,
    config: AlertReceiverConfig,
    backend: MemoryBackend | None = None,
    *,
    registry: CollectorRegistry | None = None,
    ssl_client: ssl.SSLContext | None = None,
) -> None:
    async def main() -> None:
        server = await serve_alerts(
            config, backend or MemoryBackend(), registry=registry or CollectorRegistry()
        )
        try:
            connector = aiohttp.TCPConnector(ssl=ssl_client) if ssl_client else None
            async with aiohttp.ClientSession(connector=connector) as session:
                await scenario(server, session)
        finally:
            await server.stop()

    asyncio.run(main())


def cfg(token_file: Path, **kw: Any) -> AlertReceiverConfig:
    return AlertReceiverConfig(host="127.0.0.1", port=0, token_file=token_file, **kw)


AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def post(
    server: AlertServer,
    session: aiohttp.ClientSession,
    route: str,
    body: Any,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, Any]]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with session.post(
        server.url + route,
        data=data,
        headers={"Content-Type": "application/json", **(AUTH if headers is None else headers)},
    ) as response:
        return response.status, await response.json()


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token-0123456789"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": "Bearer"},
    ],
    ids=["none", "wrong", "basic", "empty"],
)
def test_without_the_token_everything_is_401(token_file: Path, headers: dict[str, str]) -> None:
    backend = MemoryBackend()

    async def scenario(server: AlertServer, session: aiohttp.ClientSession) -> None:
        for route in (AM, FALCO):
            status, body = await post(
                server, session, route, payload("alertmanager-firing-group.json"), headers
            )
            assert status == 401, body
        assert not backend.created

    run(scenario, cfg(token_file), backend)


def test_token_rotation_takes_effect_without_restart(token_file: Path) -> None:
    async def scenario(server: AlertServer, session: aiohttp.ClientSession) -> None:
        new = "rotated-token-abcdef0123456789"
        token_file.write_text(new)
        status, _ = await post(server, session, FALCO, {}, AUTH)
        assert status == 401
        status, _ = await post(server, session, FALCO, {}, {"Authorization": f"Bearer {new}"})
        assert status == 400  # authenticated; the empty body is a schema violation

    run(scenario, cfg(token_file))


def test_bad_bodies_get_400_with_a_reason(token_file: Path) -> None:
    async def scenario(server: AlertServer, session: aiohttp.ClientSession) -> None:
        status, body = await post(server, session, AM, b"{not json")
        assert status == 400 and body["error"].startswith("invalid JSON")
        raw = payload("alertmanager-firing-group.json")
        del raw["alerts"][1]["fingerprint"]
        status, body = await post(server, session, AM, raw)
        assert status == 400
        assert body["details"] == ["alerts.1.fingerprint: Field required"]
        status, body = await post(server, session, FALCO, {"rule": "x"})
        assert status == 400 and any("priority" in d for d in body["details"])
        status, body = await post(server, session, AM, [1, 2, 3])
        assert status == 400

    run(scenario, cfg(token_file))


def test_oversized_bodies_get_413(token_file: Path) -> None:
    backend = MemoryBackend()

    async def scenario(server: AlertServer, session: aiohttp.ClientSession) -> None:
        raw = payload("alertmanager-firing-group.json")
        raw["commonAnnotations"] = {"big": "x" * 5000}
        status, _ = await post(server, session, AM, raw)
        assert status == 413

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: read-time limit
            for _ in range(10):
                yield b" " * 1000

        async with session.post(server.url + AM, data=chunks(), headers=AUTH) as response:
            assert response.status == 413
        assert not backend.created

    run(scenario, cfg(token_file, max_body_bytes=4096), backend)


def test_alertmanager_group_creates_one_checkpoint_per_pod(token_file: Path) -> None:
    backend = MemoryBackend()
    registry = CollectorRegistry()

    async def scenario(server: AlertServer, session: aiohttp.ClientSession) -> None:
        status, body = await post(server, session, AM, payload("alertmanager-firing-group.json"))
        assert status == 200
        assert [d["reason"] for d in body["decisions"]] == ["Capture", "Capture"]
        # Alertmanager re-sends the group (repeat_interval, or after a 5xx): no duplicates.
        status, body = await post(server, session, AM, payload("alertmanager-firing-group.json"))
        assert [d["reason"] for d in body["decisions"]] == ["Duplicate", "Duplicate"]
        # Then one alert resolves: nothing new.
        status, body = await post(server, session, AM, payload("alertmanager-one-resolved.json"))
        assert [d["reason"] for d in body["decisions"]] == ["Resolved", "Duplicate"]

    run(scenario, cfg(token_file), backend, registry=registry)
    assert sorted(fc.spec.pod_name for fc in backend.created.values()) == ["counter", "counter-2"]

    def count(reason: str) -> float | None:
        return registry.get_sample_value(
            "forensic_checkpoint_alerts_total", {"source": "alertmanager", "reason": reason}
        )

    assert (count("Capture"), count("Duplicate"), count("Resolved")) == (2.0, 3.0, 1.0)


def test_falco_event_resolves_the_container_and_ignores_the_test_event(token_file: Path) -> None:
    backend = MemoryBackend()

    async def scenario(server: AlertServer, session: aiohttp.ClientSession) -> None:
        status, body = await post(server, session, FALCO, payload("falcosidekick-test-rule.json"))
        assert status == 200 and body["decisions"][0]["reason"] == "TestEvent"
        raw = payload("falcosidekick-terminal-shell.json")
        del raw["output_fields"]["container.name"]  # only the 12-character id is left...
        del raw["output_fields"]["container.full_id"]
        status, body = await post(server, session, FALCO, raw)
        assert body["decisions"][0]["reason"] == "Capture", body

    run(scenario, cfg(token_file), backend)
    (fc,) = backend.created.values()
    assert fc.spec.containers == ["counter"]  # ...and resolved against containerStatuses


def test_alert_for_a_missing_pod_is_answered_and_recorded(token_file: Path) -> None:
    backend = MemoryBackend()

    async def scenario(server: AlertServer, session: aiohttp.ClientSession) -> None:
        raw = payload("alertmanager-firing-group.json")
        raw["alerts"][0]["labels"]["pod"] = "gone"
        del raw["alerts"][1]["labels"]["pod"]
        status, body = await post(server, session, AM, raw)
        assert status == 200
        assert [d["reason"] for d in body["decisions"]] == ["PodNotFound", "NoPod"]

    run(scenario, cfg(token_file), backend)
    assert not backend.created


def test_failed_create_answers_503_and_the_retry_captures(token_file: Path) -> None:
    backend = MemoryBackend()

    async def scenario(server: AlertServer, session: aiohttp.ClientSession) -> None:
        backend.fail_creates = True
        status, body = await post(server, session, AM, payload("alertmanager-firing-group.json"))
        assert status == 503
        assert {d["reason"] for d in body["decisions"]} == {"CreateFailed"}
        backend.fail_creates = False
        status, body = await post(server, session, AM, payload("alertmanager-firing-group.json"))
        assert status == 200
        assert [d["reason"] for d in body["decisions"]] == ["Capture", "Capture"]

    run(scenario, cfg(token_file), backend)
    assert len(backend.created) == 2


def test_storm_limits_hold(token_file: Path) -> None:
    backend = MemoryBackend([policy("p", cooldownSeconds=0)])
    for i in range(20):
        backend.pods["default", f"pod-{i}"] = backend.pods["default", "counter"]
    limits = Limits(rate_per_second=0.001, burst=3, max_concurrent=100)

    async def scenario(server: AlertServer, session: aiohttp.ClientSession) -> None:
        raw = payload("alertmanager-firing-group.json")
        template = raw["alerts"][0]
        raw["alerts"] = [
            {
                **template,
                "fingerprint": f"fp{i}",
                "labels": {**template["labels"], "pod": f"pod-{i}"},
            }
            for i in range(20)
        ]
        status, body = await post(server, session, AM, raw)
        assert status == 200
        reasons = [d["reason"] for d in body["decisions"]]
        assert reasons.count("Capture") == 3
        assert reasons.count("RateLimited") == 17

    run(scenario, cfg(token_file, limits=limits), backend)
    assert len(backend.created) == 3


def test_mutual_tls(tmp_path: Path, token_file: Path) -> None:
    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1")
    client_cert = ca.issue_cert("alertmanager.monitoring.svc")
    paths = {}
    for name, blob in (
        ("server.pem", server_cert.cert_chain_pems[0].bytes()),
        ("server.key", server_cert.private_key_pem.bytes()),
        ("ca.pem", ca.cert_pem.bytes()),
    ):
        paths[name] = tmp_path / name
        paths[name].write_bytes(blob)
    config = cfg(
        token_file,
        tls_cert_file=paths["server.pem"],
        tls_key_file=paths["server.key"],
        client_ca_file=paths["ca.pem"],
    )
    with_cert = ssl.create_default_context()
    ca.configure_trust(with_cert)
    client_cert.configure_cert(with_cert)
    without_cert = ssl.create_default_context()
    ca.configure_trust(without_cert)

    async def scenario(server: AlertServer, session: aiohttp.ClientSession) -> None:
        assert server.url.startswith("https://")
        status, body = await post(server, session, AM, payload("alertmanager-firing-group.json"))
        assert status == 200, body
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=without_cert)
        ) as anonymous:
            with pytest.raises(aiohttp.ClientError):
                await post(server, anonymous, AM, payload("alertmanager-firing-group.json"))

    run(scenario, config, ssl_client=with_cert)


def test_an_open_receiver_is_refused() -> None:
    with pytest.raises(ConfigError, match="does not run unauthenticated"):
        AlertReceiverConfig(port=0).validate()


def test_metrics_and_health_endpoints(token_file: Path) -> None:
    registry = CollectorRegistry()

    async def scenario(server: AlertServer, session: aiohttp.ClientSession) -> None:
        await post(server, session, FALCO, payload("falcosidekick-test-rule.json"))
        async with session.get(server.url + "/healthz") as response:
            assert await response.text() == "ok"
        async with session.get(server.url + "/metrics") as response:
            text = await response.text()
        assert 'forensic_checkpoint_alerts_total{reason="TestEvent",source="falco"} 1.0' in text
        assert "forensic_checkpoint_alert_request_seconds_bucket" in text

    run(scenario, cfg(token_file), registry=registry)


def test_policies_unreadable_at_first_is_503_then_recovers(token_file: Path) -> None:
    backend = MemoryBackend()
    backend.fail_policies = True

    async def scenario(server: AlertServer, session: aiohttp.ClientSession) -> None:
        status, body = await post(server, session, AM, payload("alertmanager-firing-group.json"))
        assert status == 503 and "capture policies" in body["error"]
        backend.fail_policies = False
        status, body = await post(server, session, AM, payload("alertmanager-firing-group.json"))
        assert status == 200
        assert [d["reason"] for d in body["decisions"]] == ["Capture", "Capture"]

    run(scenario, cfg(token_file), backend)


def test_policy_changes_apply_without_restart(token_file: Path) -> None:
    backend = MemoryBackend([policy("only-prod", match={"namespaces": ["prod"]})])

    async def scenario(server: AlertServer, session: aiohttp.ClientSession) -> None:
        raw = payload("alertmanager-firing-group.json")
        _, body = await post(server, session, AM, raw)
        assert [d["reason"] for d in body["decisions"]] == ["NamespaceExcluded"] * 2
        backend.policy_list = [policy("default-too", match={"namespaces": ["default"]})]
        await asyncio.sleep(0.05)
        await post(server, session, FALCO, payload("falcosidekick-test-rule.json"))  # schedules
        await asyncio.sleep(0.05)  # the background refresh
        raw["alerts"][0]["fingerprint"] = "new-firing"
        _, body = await post(server, session, AM, raw)
        assert [d["reason"] for d in body["decisions"]] == ["Capture", "Duplicate"]

    run(scenario, cfg(token_file, refresh_seconds=0.01), backend)


def test_truncated_groups_are_logged(token_file: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def scenario(server: AlertServer, session: aiohttp.ClientSession) -> None:
        raw = payload("alertmanager-firing-group.json")
        raw["truncatedAlerts"] = 7
        status, _ = await post(server, session, AM, raw)
        assert status == 200

    with caplog.at_level("INFO", logger="forensic_checkpoint.alerts"):
        run(scenario, cfg(token_file))
    records = [json.loads(r.getMessage()) for r in caplog.records]
    assert {
        "event": "alerts-truncated",
        "source": "alertmanager",
        "truncatedAlerts": 7,
    }.items() <= (next(r for r in records if r["event"] == "alerts-truncated").items())
    decisions = [r for r in records if r["event"] == "alert"]
    assert [(r["pod"], r["reason"]) for r in decisions] == [
        ("counter", "Capture"),
        ("counter-2", "Capture"),
    ]
