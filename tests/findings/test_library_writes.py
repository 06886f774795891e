"""Writes below a library directory (issue 16's second false positive): a Python interpreter
with a cold bytecode cache writes one ``__pycache__/*.pyc`` per module it imports, which gave
one medium finding each. Bytecode caches are exempt (a data exemption in rules.yaml, with its
reason), anything else below a library directory is still reported, as one finding.

No committed archive shows a cold cache: counter-blog's image had its bytecode compiled. The
edit adds to its rootfs-diff.tar what CPython 3.11 writes when it imports modules without a
cache (entries with real bytecode, compiled by this interpreter), plus the writes that must
stay findings, and a podman ``deleted.files`` naming one deleted source.
"""

from __future__ import annotations

import importlib.util
import io
import json
import marshal
import tarfile
from pathlib import Path

from tests.factories import edited_sample

from forensic_checkpoint.analysis import AnalyzerOptions, analyze
from forensic_checkpoint.analysis.findings.facts import bytecode_source

LIB = "usr/lib/python3.11"
#: modules a small web app imports that an image may ship without bytecode
CACHED = [
    "json/__init__", "json/decoder", "json/encoder", "json/scanner", "http/__init__",
    "http/server", "http/client", "email/parser", "email/feedparser", "socketserver", "mimetypes",
]  # fmt: skip
#: still findings: a dropped source, a .pyc outside the cache shape, a cache whose source the
#: container deleted
SUSPECT = [f"/{LIB}/sitecustomize.py", f"/{LIB}/__pycache__/evil.pyc"]
ORPHAN = f"/{LIB}/json/__pycache__/tool.cpython-311.pyc"


def _pyc(source: str) -> bytes:
    """A timestamp-based .pyc as importlib writes it (PEP 552: magic, flags, mtime, size)."""
    code = compile(source, "<module>", "exec")
    header = importlib.util.MAGIC_NUMBER + (0).to_bytes(4, "little")
    return (
        header
        + (1795864400).to_bytes(4, "little")
        + len(source).to_bytes(4, "little")
        + (marshal.dumps(code))
    )


def _cached(module: str) -> str:
    folder, _, name = module.rpartition("/")
    return f"{LIB}/{folder + '/' if folder else ''}__pycache__/{name}.cpython-311.pyc"


def _add_writes(members: dict[str, bytes]) -> None:
    out = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(members["rootfs-diff.tar"])) as src,
        tarfile.open(fileobj=out, mode="w") as dst,
    ):
        for info in src.getmembers():
            dst.addfile(info, src.extractfile(info))
        for path in [*(_cached(m) for m in CACHED), *(p.lstrip("/") for p in [*SUSPECT, ORPHAN])]:
            data = b"import os\n" if path.endswith(".py") else _pyc("x = 1\n")
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.mtime = len(data), 0o644, 1795864400
            dst.addfile(info, io.BytesIO(data))
    members["rootfs-diff.tar"] = out.getvalue()
    members["deleted.files"] = json.dumps([f"/{LIB}/json/tool.py"]).encode()


def test_bytecode_caches_are_exempt_and_other_library_writes_are_one_finding(
    tmp_path: Path,
) -> None:
    report = analyze(edited_sample("counter-blog", tmp_path, _add_writes), AnalyzerOptions())
    assert len([e for e in report.rootfs.changed if e.path.endswith(".pyc")]) == len(CACHED) + 2
    found = [f for f in report.findings if f.rule == "library-dir-write"]
    assert len(found) == 1, [f.id for f in found]
    finding = found[0]
    assert finding.id == "library-dir-write:all"
    assert finding.evidence.details["count"] == "3"
    assert finding.evidence.details["sample"] == ", ".join(sorted([*SUSPECT, ORPHAN]))
    assert finding.evidence.path in [*SUSPECT, ORPHAN]
    assert [f.id for f in report.findings if f.severity not in ("info", "medium")] == []


def test_the_bytecode_shape_is_narrow() -> None:
    assert bytecode_source("/usr/lib/python3.11/json/__pycache__/decoder.cpython-311.pyc") == (
        "/usr/lib/python3.11/json/decoder.py"
    )
    assert bytecode_source(
        "/usr/lib/python3/dist-packages/__pycache__/six.cpython-311.opt-1.pyc"
    ) == ("/usr/lib/python3/dist-packages/six.py")
    assert bytecode_source("/usr/lib/python3.11/__pycache__/x.pypy39.pyc") is None
    assert bytecode_source("/usr/lib/python3.11/__pycache__/evil.pyc") is None
    assert bytecode_source("/usr/lib/python3.11/json/decoder.cpython-311.pyc") is None
    assert bytecode_source("/usr/lib/x86_64-linux-gnu/__pycache__/libz.so") is None


def test_an_exemption_needs_its_reason() -> None:
    import pytest

    from forensic_checkpoint.analysis.findings.engine import parse_rules
    from forensic_checkpoint.errors import ConfigError

    rule = """
rules:
  - id: r
    title: t
    severity: low
    subject: file
    source: s
    when: {type: file}
    exempt: [{when: {path: /x}}]
"""
    with pytest.raises(ConfigError, match="reason"):
        parse_rules(rule)
    with pytest.raises(ConfigError, match="unknown operators"):
        parse_rules(rule.replace("{path: /x}}", "{path: {like: /x}}, reason: r}"))
