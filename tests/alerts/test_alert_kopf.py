"""The receiver inside a real kopf operator: up with the operator, answering from kopf's event
loop, and gone (port closed) when the operator stops."""

from __future__ import annotations

import asyncio
import secrets
import socket
import threading
from pathlib import Path
from typing import Any

import kopf
import pytest
import requests
from tests.alerts.helpers import payload
from tests.alerts.peers import free_port, wait_for

from forensic_checkpoint.controller.alerts import AlertReceiverConfig
from forensic_checkpoint.controller.alerts.kopf_wiring import register
from forensic_checkpoint.k8s.connection import connection_facts

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_receiver_runs_and_stops_with_the_kopf_operator(dev_cluster: Any, tmp_path: Path) -> None:
    api = dev_cluster.admin_client()
    facts = connection_facts(api)
    token = secrets.token_urlsafe(24)
    (tmp_path / "token").write_text(token)
    port = free_port()
    config = AlertReceiverConfig(host="127.0.0.1", port=port, token_file=tmp_path / "token")

    registry = kopf.OperatorRegistry()

    @kopf.on.startup(registry=registry)
    def _settings(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.scanning.disabled = True

    @kopf.on.login(registry=registry)
    def _login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(
            server=facts.server,
            ca_path=facts.ca_path,
            certificate_path=facts.certificate_path,
            private_key_path=facts.private_key_path,
        )

    register(registry, config, api)
    stop = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(
                kopf.operator(
                    registry=registry,
                    standalone=True,
                    namespaces=[dev_cluster.namespace],
                    stop_flag=stop,
                )
            )
        except BaseException as exc:  # reported to the test thread
            failure.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: listening(port) or bool(failure), 60, "the receiver in kopf")
        assert not failure, failure
        answer = requests.post(
            f"http://127.0.0.1:{port}/v1/alerts/falcosidekick",
            json=payload("falcosidekick-test-rule.json"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        assert answer.status_code == 200
        assert answer.json()["decisions"][0]["reason"] == "TestEvent"
    finally:
        stop.set()
        thread.join(timeout=60)
    assert not thread.is_alive()
    assert not failure, failure
    assert not listening(port)
