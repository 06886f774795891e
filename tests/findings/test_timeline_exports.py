"""Timeline sources and the three exports (Timesketch JSONL, STIX 2.1, offline HTML)."""

from __future__ import annotations

import copy
import json
import shutil
import struct
import subprocess
from html import escape
from pathlib import Path

import pytest
from tests.findings.findings_samples import ATTACKS, BENIGN, DATA, analysed, truth

from forensic_checkpoint.analysis.presentation import html, stix, timesketch
from forensic_checkpoint.analysis.sections.timeline import normalize, sort_key
from forensic_checkpoint.cli.main import main
from forensic_checkpoint.errors import ReportExportError

ALL = BENIGN + ATTACKS


def test_normalize_keeps_the_source_precision_and_converts_to_utc() -> None:
    assert normalize("2026-11-28T11:15:21.791931589+00:00") == (
        "2026-11-28T11:15:21.791931589Z",
        1795864521_791931589,
        "ns",
    )
    assert normalize("2026-11-28T13:15:21+02:00") == (
        "2026-11-28T11:15:21Z",
        1795864521 * 10**9,
        "s",
    )
    assert normalize("yesterday") is None


def test_multi_proc_timeline_has_every_source_in_order() -> None:
    events = analysed("multi-proc").timeline
    assert [sort_key(e) for e in events] == sorted(sort_key(e) for e in events)
    assert {e.source for e in events} == {"config.dump", "ctr.log", "rootfs-diff", "ghost-file"}
    ghost = {e.timestamp_desc: e for e in events if e.source == "ghost-file"}
    # ghost_file_entry mtim/atim, microseconds (findings-research.md 1.3.2)
    assert ghost["File Modified"].time == "2026-11-28T11:15:21.817519Z"
    assert ghost["File Accessed"].time == "2026-11-28T11:15:33.584360Z"
    assert ghost["File Modified"].path == "/var/log/app/evidence.log"
    assert ghost["File Modified"].pid == 11
    created = next(e for e in events if e.timestamp_desc == "Container Created")
    assert created.precision == "ns"


def test_attack_timeline_interleaves_commands_files_and_the_exploit() -> None:
    events = analysed("attack-revshell").timeline
    text = [(e.source, e.message) for e in events]
    exploit = next(i for i, (s, m) in enumerate(text) if s == "container.log" and "%3B" in m)
    first_cmd = next(i for i, (s, _) in enumerate(text) if s == "bash-history")
    cron = next(i for i, (_, m) in enumerate(text) if "/etc/cron.d/persist written" in m)
    cron_cmd = next(i for i, (_, m) in enumerate(text) if m.endswith(">> /etc/cron.d/persist"))
    assert exploit < first_cmd < cron_cmd
    assert abs(cron - cron_cmd) <= 2  # same second: the file and the command that wrote it
    assert text[-1][0] == "config.dump"  # checkpointed last


@pytest.mark.parametrize("name", ALL)
def test_timesketch_every_line_validates(name: str) -> None:
    report = analysed(name)
    lines = timesketch.to_jsonl(report).splitlines()
    assert len(lines) == len(report.timeline) + len(report.findings)
    for line in lines:
        timesketch.validate_line(line)
        doc = json.loads(line)
        assert doc["datetime"].endswith("Z")
        assert doc["timestamp"] == normalize(doc["datetime"])[1] // 1000  # type: ignore[index]


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("{not json", "not JSON"),
        ('{"message": "m", "timestamp_desc": "d"}', "datetime"),
        ('{"message": "m", "datetime": "2026-11-28T11:15:21", "timestamp_desc": "d"}', "time zone"),
        ('{"message": "", "datetime": "2026-11-28T11:15:21Z", "timestamp_desc": "d"}', "message"),
        ('{"message": "m", "datetime": "28/11/2026", "timestamp_desc": "d"}', "ISO 8601"),
    ],
)
def test_timesketch_validator_rejects_what_timesketch_rejects(line: str, why: str) -> None:
    with pytest.raises(ReportExportError, match=why):
        timesketch.validate_line(line)


@pytest.mark.slow  # stix2-validator loads its schemas
@pytest.mark.parametrize("name", ALL)
def test_stix_bundle_passes_stix2_validator(name: str, tmp_path: Path) -> None:
    from stix2validator import ValidationOptions, validate_file

    path = tmp_path / "bundle.json"
    path.write_text(stix.to_json(analysed(name)))
    result = validate_file(str(path), ValidationOptions(version="2.1"))
    errors = [str(e) for o in result.object_results for e in o.errors]
    assert result.is_valid, errors


def test_stix_bundle_carries_the_attack_observables() -> None:
    bundle = stix.to_bundle(analysed("attack-revshell"))
    by_type: dict[str, list[dict[str, object]]] = {}
    for obj in bundle["objects"]:
        by_type.setdefault(str(obj["type"]), []).append(obj)
    traffic = by_type["network-traffic"][0]
    assert traffic["dst_port"] == 4444 and traffic["src_port"] == 58112
    addresses = {o["value"] for o in by_type["ipv4-addr"]}
    assert addresses == {"10.86.0.1", "10.86.0.2"}
    hashes = {o.get("hashes", {}).get("SHA-256") for o in by_type["file"]}  # type: ignore[attr-defined]
    assert "4add4bb89d8ca0e3b1bd861130ddd7ae0fd9617a8055de0a38c8d2ca1ac95723" in hashes
    techniques = {o["external_references"][0]["external_id"] for o in by_type["attack-pattern"]}  # type: ignore[index]
    assert {"T1059.004", "T1620", "T1053.003", "T1098.004"} <= techniques
    assert len(by_type["report"]) == 1
    # a process appears once however many findings name it
    assert len([o for o in by_type["process"] if o["pid"] == 14]) == 1


def test_html_is_one_offline_file_with_everything_escaped() -> None:
    report = copy.deepcopy(analysed("attack-revshell"))
    report.processes[0].cmdline = ["<script>alert(1)</script>"]
    page = html.to_html(report)
    assert "<script" not in page.replace("&lt;script&gt;", "")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    for marker in ("src=", "href=", "@import", "url("):
        assert marker not in page
    for finding in report.findings:
        assert escape(finding.id) in page
    assert "default-src &#x27;none&#x27;" in page or "default-src 'none'" in page


def test_cli_writes_every_export(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    paths = {flag: tmp_path / f"x.{flag}" for flag in ("timesketch", "stix", "html")}
    args = ["analyze", str(DATA / "attack-revshell.tar.zst"), "-o", "json", "-O", str(out)]
    for flag, path in paths.items():
        args += [f"--export-{flag}", str(path)]
    assert main(args) == 0
    report = json.loads(out.read_text())
    assert len(paths["timesketch"].read_text().splitlines()) == len(report["timeline"]) + len(
        report["findings"]
    )
    assert json.loads(paths["stix"].read_text())["type"] == "bundle"
    assert paths["html"].read_text().startswith("<!DOCTYPE html>")
    # the exports come from the redacted report: no token value anywhere
    jwt = truth("attack-revshell")["attack"]["fake_serviceaccount_jwt"]["value"]
    for path in [out, *paths.values()]:
        assert jwt[40:100] not in path.read_text()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.slow  # starts chromium
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_html_renders_in_headless_chromium(tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(html.to_html(analysed("attack-revshell")))
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--window-size=1200,1600",
            f"--screenshot={shot}",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (1200, 1600)
    assert len(data) > 50_000  # a blank page compresses to a few KiB
