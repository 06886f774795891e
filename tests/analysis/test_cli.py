"""The analyze / diff / show-file commands end to end, through the real CLI entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from tests.analysis.sample_data import sample_path, truth

from forensic_checkpoint.analysis import AnalyzerOptions, analyze
from forensic_checkpoint.analysis.model.report import REDACTED
from forensic_checkpoint.cli.main import main

MULTI = str(sample_path("multi-proc"))
SECRET = "st_a05909b0369acc80c6bea84a"


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, object]:
    assert main(list(args)) == 0
    doc: dict[str, object] = json.loads(capsys.readouterr().out)
    return doc


def test_json_masks_secrets_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    doc = run_json(
        capsys,
        "analyze",
        MULTI,
        "-o",
        "json",
        "--search",
        "MEMSECRET-7AEBFA96D9785726",
        "--search-regex",
        r"st_[0-9a-f]{24}",
    )
    text = json.dumps(doc)
    assert SECRET not in text
    assert doc["redacted"] is True
    server = next(p for p in doc["processes"] if p["pid"] == 11)  # type: ignore[attr-defined]
    env = {e["name"]: e["value"] for e in server["env"]}
    assert env["SECRET_TOKEN"] == REDACTED
    literal, regex = doc["memory"]["searches"]  # type: ignore[index]
    assert literal["matches"][0]["match"] == "MEMSECRET-7AEBFA96D9785726"
    assert set(literal["matches"][0]["context"]) <= set("*MEMSECRET-7AEBFA96D9785726")
    assert regex["totalMatches"] == 5
    assert all(m["match"] == REDACTED and m["context"] == REDACTED for m in regex["matches"])


def test_reveal_shows_secrets(capsys: pytest.CaptureFixture[str]) -> None:
    doc = run_json(
        capsys,
        "analyze",
        MULTI,
        "-o",
        "json",
        "--reveal",
        "--search-regex",
        r"st_[0-9a-f]{24}",
    )
    assert doc["redacted"] is False
    server = next(p for p in doc["processes"] if p["pid"] == 11)  # type: ignore[attr-defined]
    assert {"name": "SECRET_TOKEN", "value": SECRET} in server["env"]
    (regex,) = doc["memory"]["searches"]  # type: ignore[index]
    assert {m["match"] for m in regex["matches"]} == {SECRET}


def test_yaml_is_the_same_document(capsys: pytest.CaptureFixture[str]) -> None:
    as_json = run_json(capsys, "analyze", MULTI, "-o", "json")
    assert main(["analyze", MULTI, "-o", "yaml"]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == as_json


def test_text_report_shows_what_checkpointctl_misses(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", MULTI, "--search", "MEMSECRET"]) == 0
    out = capsys.readouterr().out
    for needle in (
        "Process tree",
        "11 python3 (2 threads)",
        "@multiproc-ctl",  # abstract unix name with '@', not a raw NUL
        "DELETED",  # deleted-but-open file flagged
        "TCP_INFLIGHT_CTb2777485eb",  # queued TCP data
        "UNIX_INFLIGHT_CTb2777485eb",
        "PIPE_INFLIGHT_785726",
        "/etc/motd",  # deleted.files
        "/var/lib/app/state.json",  # rootfs change
        "[stack]",
        "Memory search literal 'MEMSECRET': 2 matches",
        "freezing_time",
    ):
        assert needle in out, needle
    assert "\0" not in out
    assert SECRET not in out


def test_output_file(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    assert main(["analyze", MULTI, "-o", "json", "-O", str(out)]) == 0
    assert json.loads(out.read_text())["container"]["hostname"] == "multiproc-7"


def test_show_file_prints_rootfs_and_ghost_content(
    capsysbinary: pytest.CaptureFixture[bytes], tmp_path: Path
) -> None:
    t = truth("multi-proc")
    issue = next(e for e in t["rootfs"]["entries"] if e["path"] == "/etc/issue")
    assert main(["show-file", MULTI, "/etc/issue"]) == 0
    assert capsysbinary.readouterr().out == issue["content"].encode()
    ghost = t["deleted_open_files"][0]
    out = tmp_path / "ghost"
    assert main(["show-file", MULTI, ghost["path"], "-O", str(out)]) == 0
    assert out.read_text() == ghost["content"]


def test_show_file_of_containerd_gzip_diff(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    path = str(sample_path("attack-revshell"))
    assert main(["show-file", path, "/tmp/.x/kworkerd"]) == 0
    import hashlib

    data = capsysbinary.readouterr().out
    entry = next(
        e for e in truth("attack-revshell")["rootfs"]["entries"] if e["path"] == "/tmp/.x/kworkerd"
    )
    assert hashlib.sha256(data).hexdigest() == entry["sha256"]


def test_show_file_missing_is_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show-file", MULTI, "/etc/shadow"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "/etc/shadow" in err


def test_bad_regex_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", MULTI, "--search-regex", "(unclosed"]) == 1
    err = capsys.readouterr().err
    assert "--search-regex" in err and err.count("\n") == 1


def test_diff_of_two_checkpoints_of_one_container(capsys: pytest.CaptureFixture[str]) -> None:
    earlier = str(sample_path("multi-proc.podman-default-zstd"))
    doc = run_json(capsys, "diff", earlier, MULTI, "-o", "json")
    assert doc["sameContainer"] is True
    assert doc["processes"] == {"added": [], "removed": [], "changed": []}
    memory = doc["memory"]
    assert isinstance(memory, dict)
    assert memory["deltaBytes"] == memory["bBytes"] - memory["aBytes"]
    assert {p["pid"] for p in memory["processes"]} == {1, 11, 14, 17}


def test_diff_of_different_containers(capsys: pytest.CaptureFixture[str]) -> None:
    blog = str(sample_path("counter-blog"))
    doc = run_json(capsys, "diff", blog, MULTI, "-o", "json")
    assert doc["sameContainer"] is False
    procs = doc["processes"]
    assert isinstance(procs, dict)
    assert any(line.startswith("11 python3") for line in procs["added"])
    assert any(line.startswith("6 counter.py") for line in procs["removed"])
    assert any(line.startswith("1 ") for line in procs["changed"])
    sockets = doc["sockets"]
    assert isinstance(sockets, dict)
    assert any("0.0.0.0:7070" in s for s in sockets["added"])
    assert any("0.0.0.0:8088" in s for s in sockets["removed"])
    rootfs = doc["rootfs"]
    assert isinstance(rootfs, dict)
    assert "/etc/motd deleted" in rootfs["added"]
    assert set(doc["findings"]) == {"added", "removed", "changed"}  # type: ignore[call-overload]
    assert main(["diff", blog, MULTI]) == 0
    assert "Checkpoint diff" in capsys.readouterr().out


@pytest.mark.slow  # analyses four samples, twice
def test_analyze_is_thread_safe() -> None:
    """The node agent analyses in worker threads: parallel runs give the serial results."""
    names = ["multi-proc", "counter-blog-crio", "attack-revshell", "counter-blog"]
    options = AnalyzerOptions(searches=["python"], reveal=True)
    serial = {n: analyze(sample_path(n), options).to_json_dict() for n in names}
    with ThreadPoolExecutor(max_workers=4) as pool:
        parallel = list(pool.map(lambda n: analyze(sample_path(n), options), names * 2))
    for name, report in zip(names * 2, parallel, strict=True):
        assert report.to_json_dict() == serial[name]


def test_list_reads_identity_and_reports_bad_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    shutil.copy(sample_path("attack-revshell"), tmp_path / "checkpoint-web-1.tar")
    shutil.copy(sample_path("counter-blog-crio"), tmp_path / "checkpoint-counter-2.tar")
    (tmp_path / "checkpoint-broken.tar").write_bytes(b"not a tar at all" * 64)
    (tmp_path / "unrelated.tar").write_bytes(b"ignored: not named checkpoint-*")
    assert main(["list", str(tmp_path), "-o", "json"]) == 1  # one file is broken
    rows = json.loads(capsys.readouterr().out)["checkpoints"]
    assert [r["path"].rsplit("/", 1)[-1] for r in rows] == [
        "checkpoint-broken.tar",
        "checkpoint-counter-2.tar",
        "checkpoint-web-1.tar",
    ]
    broken, crio, web = rows
    assert broken["error"] and broken["engine"] is None
    assert (crio["namespace"], crio["pod"], crio["container"], crio["engine"]) == (
        "default",
        "counters",
        "counter",
        "cri-o",
    )
    assert (web["namespace"], web["pod"], web["container"], web["engine"]) == (
        "shop",
        "storefront-7d4b9c6f5-x8k2m",
        "web",
        "containerd",
    )
    assert web["checkpointedAt"] == "2026-11-28T12:10:54.556854487Z"


def test_show_member_raw_and_decoded(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    assert main(["show-file", MULTI, "deleted.files"]) == 0
    assert json.loads(capsysbinary.readouterr().out) == ["/etc/motd"]
    assert main(["show-file", MULTI, "checkpoint/pstree.img", "--decode"]) == 0
    pstree = json.loads(capsysbinary.readouterr().out)
    assert pstree["magic"] == "PSTREE"
    assert [e["pid"] for e in pstree["entries"]] == [1, 11, 14, 17]
    assert main(["show-file", MULTI, "checkpoint/pagemap-17.img", "--decode"]) == 0
    pagemap = json.loads(capsysbinary.readouterr().out)
    present = sum(e["nr_pages"] for e in pagemap["entries"][1:] if e["flags"] & 4)
    assert present * 4096 == 110592  # == size of pages-4.img, pid 17's pages
    assert main(["show-file", MULTI, "spec.dump", "--decode"]) == 1
    assert main(["show-file", MULTI, "../../etc/passwd"]) == 1


def test_max_matches_caps_the_report_not_the_count(capsys: pytest.CaptureFixture[str]) -> None:
    doc = run_json(
        capsys, "analyze", MULTI, "-o", "json", "--search", "python", "--max-matches", "3"
    )
    (search,) = doc["memory"]["searches"]  # type: ignore[index]
    assert len(search["matches"]) == 3
    assert search["totalMatches"] > 3 and search["truncated"] is True


def test_diff_shows_new_findings(capsys: pytest.CaptureFixture[str]) -> None:
    blog = str(sample_path("counter-blog-containerd"))
    attack = str(sample_path("attack-revshell"))
    doc = run_json(capsys, "diff", blog, attack, "-o", "json")
    added = doc["findings"]["added"]  # type: ignore[index]
    assert any("(reverse-shell:pid=14)" in line for line in added)
    assert any("(memfd-exec:pid=23)" in line for line in added)


def test_show_memory_hexdump_and_raw(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    attack = str(sample_path("attack-revshell"))
    assert main(["show-file", attack, "memory:24:0x7f8f504e3000:0x60"]) == 0
    rows = capsysbinary.readouterr().out.decode().splitlines()
    assert len(rows) == 6
    assert rows[0] == "00007f8f504e3000  " + " ".join(["90"] * 16) + "  |................|"
    assert rows[4].startswith("00007f8f504e3040  45 56 49 4c") and "|EVIL_SHELLCODE_M|" in rows[4]
    # The env entry the truth file locates at 0x7ffdd1b73f01 in pid 11, as raw bytes.
    assert main(["show-file", MULTI, "memory:11:0x7ffdd1b73f01:40", "--raw"]) == 0
    assert capsysbinary.readouterr().out == f"SECRET_TOKEN={SECRET}".encode()
    # Every dumped byte of pid 17 (pages-4.img holds 110592 bytes), one 16-byte row each.
    assert main(["show-file", MULTI, "memory:17"]) == 0
    assert len(capsysbinary.readouterr().out.splitlines()) == 110592 // 16
    assert main(["show-file", MULTI, "memory:99"]) == 1
    assert main(["show-file", MULTI, "memory:11:0x10"]) == 1


def test_pid_prunes_to_a_subtree(capsys: pytest.CaptureFixture[str]) -> None:
    attack = str(sample_path("attack-revshell"))
    doc = run_json(capsys, "analyze", attack, "--pid", "14", "-o", "json")
    assert [p["pid"] for p in doc["processes"]] == [14, 22, 23, 24]  # type: ignore[attr-defined]
    assert [s["localPort"] for s in doc["sockets"]] == [58112]  # type: ignore[attr-defined]
    ids = {f["id"] for f in doc["findings"]}  # type: ignore[attr-defined]
    assert "reverse-shell:pid=14" in ids and "memfd-exec:pid=23" in ids
    assert main(["analyze", attack, "--pid", "77"]) == 1
    assert "--pid 77" in capsys.readouterr().err


def test_json_analyze_imports_only_what_json_output_needs(tmp_path: Path) -> None:
    """Start-up is most of a small analyze: the JSON path must not load the text renderer,
    the exporters, the whole pycriu.images package (all ~60 modules), pydantic (the report is
    dataclasses), a YAML parser (the bundled rules are JSON) or any cluster library."""
    script = (
        "import sys\n"
        "from forensic_checkpoint.cli.main import main\n"
        f"main(['analyze', {str(sample_path('counter-blog-crio'))!r}, '-o', 'json',"
        f" '-o', {str(tmp_path / 'r.json')!r}])\n"
        "print('\\n'.join(sorted(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout.split()
    loaded = set(out)
    assert "forensic_checkpoint.analysis.commands.analyzer" in loaded  # the run did happen
    for heavy in (
        "rich",
        "forensic_checkpoint.analysis.presentation.text",
        "forensic_checkpoint.analysis.presentation.html",
        "forensic_checkpoint.analysis.presentation.stix",
        "forensic_checkpoint.analysis.presentation.timesketch",
        "pycriu.images",
        "pycriu.images.pb2dict",
        "pydantic",
        "yaml",
        "kubernetes",
        "kopf",
        "requests",
        "aiohttp",
    ):
        assert heavy not in loaded, heavy


def test_an_empty_search_does_not_turn_a_regex_into_a_revealed_literal(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An empty --search is skipped; the regex after it must stay a masked regex (it was
    once counted as a literal and printed its secret match)."""
    blog = str(sample_path("counter-blog-crio"))
    doc = run_json(
        capsys,
        "analyze",
        blog,
        "--search",
        "",
        "--search-regex",
        "RANDOM_[0-9]+_KEY",
        "-o",
        "json",
    )
    [search] = doc["memory"]["searches"]  # type: ignore[index]
    assert search["kind"] == "regex" and search["totalMatches"] > 0
    assert all(m["match"] == "<redacted>" for m in search["matches"])
    assert "RANDOM_4105_KEY" not in json.dumps(search)  # the match and its context
