"""Memory-engine and analyzer benchmarks against checkpointctl v1.5.0 (``make bench``).

Every figure is a whole process (start-up included), timed as the median of several runs on
the same files, with the peak RSS of that process (``wait4``). Each comparison prints
``ratio = peer time / our time`` next to its target. Inputs:

* the small samples from tests/data, decompressed into a temporary directory;
* ``memhog-large.tar`` from the shared sample set (``../shared/samples`` next to the repo, or
  ``$FC_SAMPLES``), skipped with a message when absent;
* a generated archive with more than 2 GiB of pages (benchmarks/large_archive.py), written to
  the temporary directory and deleted afterwards.

    python -m benchmarks.run [--runs N] [--large-runs N] [--skip-large] [--skip-generated]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import zstandard

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
SMALL = [
    "counter-blog",
    "counter-blog-crio",
    "counter-blog-containerd",
    "multi-proc",
    "multi-proc.podman-default-zstd",
    "attack-revshell",
]
OURS = [sys.executable, "-m", "forensic_checkpoint"]


@dataclass
class Timing:
    seconds: float
    peak_rss_mb: float
    stdout: str
    #: median user+sys CPU seconds: steadier than wall time when other work shares the host
    cpu_seconds: float = 0.0


TIME_BIN = shutil.which("time", path="/usr/bin:/bin")


def child_env(scratch: Path) -> dict[str, str]:
    """Environment of the timed processes: bytecode is cached (in the scratch directory).

    An installed package has compiled bytecode; a shell with PYTHONDONTWRITEBYTECODE set
    (as in CI containers) would make every run recompile every changed module instead.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(scratch / "pycache")
    return env


def run_once(cmd: list[str], out: Path) -> tuple[float, float, float]:
    """Wall time, peak RSS (MB) and CPU seconds of one run.

    The RSS comes from GNU time when present: ``wait4`` on our own child would also count the
    pages the forked child shares with this (larger) benchmark process before it execs.
    """
    rss_file = out.with_suffix(".rss")
    wrapped = [TIME_BIN, "-f", "%M", "-o", str(rss_file), *cmd] if TIME_BIN else cmd
    with out.open("wb") as sink:
        start = time.perf_counter()
        proc = subprocess.Popen(
            wrapped,
            stdout=sink,
            stderr=subprocess.DEVNULL,
            cwd=REPO,
            env=child_env(out.parent),
        )
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited with {code}")
    kib = int(rss_file.read_text().split()[-1]) if TIME_BIN else usage.ru_maxrss
    return elapsed, kib / 1024, usage.ru_utime + usage.ru_stime


def timed(cmd: list[str], runs: int, scratch: Path) -> Timing:
    """Median of ``runs`` runs after one untimed warm-up run (bytecode and page cache)."""
    out = scratch / "stdout.txt"
    run_once(cmd, out)
    samples = [run_once(cmd, out) for _ in range(runs)]
    return Timing(
        statistics.median(s for s, _, _ in samples),
        max(r for _, r, _ in samples),
        out.read_text(errors="replace"),
        statistics.median(c for _, _, c in samples),
    )


def timed_pair(ours: list[str], peer: list[str], runs: int, scratch: Path) -> tuple[Timing, Timing]:
    """Time two commands in alternation, so that both see the same changes in host load."""
    warm = scratch / "stdout.txt"
    run_once(ours, warm)
    run_once(peer, warm)
    a: list[tuple[float, float, float]] = []
    b: list[tuple[float, float, float]] = []
    for _ in range(runs):
        a.append(run_once(ours, scratch / "ours.txt"))
        b.append(run_once(peer, scratch / "peer.txt"))

    def summary(samples: list[tuple[float, float, float]], out: Path) -> Timing:
        return Timing(
            statistics.median(s for s, _, _ in samples),
            max(r for _, r, _ in samples),
            out.read_text(errors="replace"),
            statistics.median(c for _, _, c in samples),
        )

    return summary(a, scratch / "ours.txt"), summary(b, scratch / "peer.txt")


def peer_binary() -> Path | None:
    try:
        done = subprocess.run(
            ["bash", str(REPO / "scripts" / "build-peers.sh")],
            check=True,
            capture_output=True,
            text=True,
        )
    except subprocess.CalledProcessError as exc:
        print(f"checkpointctl unavailable, peer figures skipped: {exc.stderr.strip()[-300:]}")
        return None
    return Path(done.stdout.strip().splitlines()[-1])


def ratio_line(
    label: str, ours: Timing, peer: float | None, target: float | None, extra: str = ""
) -> None:
    text = (
        f"{label:<58} ours {ours.seconds:7.3f} s (cpu {ours.cpu_seconds:.3f} s)"
        f"  rss {ours.peak_rss_mb:6.1f} MB"
    )
    if peer is not None:
        ratio = peer / ours.seconds
        verdict = "" if target is None else (" OK" if ratio >= target else " MISSED")
        goal = "" if target is None else f" (target >= {target:g}x)"
        text += f"  peer {peer:7.3f} s  ratio {ratio:5.2f}x{goal}{verdict}"
    print(text + extra)


def shared_samples() -> Path | None:
    for candidate in (os.environ.get("FC_SAMPLES"), REPO.parent / "shared" / "samples"):
        if candidate and (Path(candidate) / "memhog-large.tar").is_file():
            return Path(candidate)
    return None


def our_matches(report: Path) -> list[str]:
    searches = json.loads(report.read_text())["memory"]["searches"]
    return [m["address"] for s in searches for m in s["matches"]]


def search_matches(stdout: str) -> list[str]:
    """Addresses in `forensic-checkpoint search -o json` output."""
    searches = json.loads(stdout)["memory"]["searches"]
    return [m["address"] for s in searches for m in s["matches"]]


def peer_matches(text: str) -> list[str]:
    return [f"0x{int(a, 16):x}" for a in re.findall(r"^([0-9a-f]{16})\s", text, re.M)]


def bench_small(scratch: Path, peer: Path | None, runs: int) -> None:
    print(f"\n== Small samples: whole-process analyze (median of {runs}; goal < 0.25 s)")
    floor = timed([sys.executable, "-c", "pass"], runs, scratch)
    print(
        f"{'floor: python -c pass':<58} ours {floor.seconds:7.3f} s (cpu {floor.cpu_seconds:.3f} s)"
    )
    for name in SMALL:
        tar = scratch / f"{name}.tar"
        with (DATA / f"{name}.tar.zst").open("rb") as src, tar.open("wb") as dst:
            zstandard.ZstdDecompressor().copy_stream(src, dst)
        cmd = [*OURS, "analyze", str(tar), "-o", "json"]
        peer_s = None
        if peer is not None:
            ours, inspect = timed_pair(
                cmd, [str(peer), "inspect", "--all", str(tar)], runs, scratch
            )
            peer_s = inspect.seconds
        else:
            ours = timed(cmd, runs, scratch)
        mark = " (< 0.25 s OK)" if ours.seconds < 0.25 else " (>= 0.25 s: MISSED)"
        ratio_line(f"analyze vs inspect --all: {name}", ours, peer_s, None, mark)


def bench_memhog(samples: Path | None, scratch: Path, peer: Path | None, runs: int) -> None:
    print(f"\n== memhog-large.tar (100 MiB of pages; median of {runs})")
    if samples is None:
        print("memhog-large.tar not found (../shared/samples or $FC_SAMPLES): skipped")
        return
    tar = samples / "memhog-large.tar"
    truth = json.loads((REPO / "benchmarks" / "memhog-large.truth.json").read_text())
    markers = truth["large_memory_markers"]["list"]
    pid = truth["large_memory_markers"]["pid"]
    ours = timed([*OURS, "analyze", str(tar), "-o", "json"], runs, scratch)
    peer_s = None
    if peer is not None:
        peer_s = timed([str(peer), "inspect", "--all", str(tar)], runs, scratch).seconds
    ratio_line("analyze vs inspect --all", ours, peer_s, None)

    report = scratch / "memhog.json"
    cmd = [*OURS, "analyze", str(tar), "--search", "MEMHOG_", "-o", "json", "-O", str(report)]
    ours = timed(cmd, runs, scratch)
    found = our_matches(report)
    expected = sorted(m["vaddr"] for m in markers)
    extra = f"  markers ours {len(found)}/{len(expected)}"
    assert sorted(found) == expected, "our search missed memhog markers"
    analyze_line = extra

    # What an analyst runs to find text: `search`, the whole process, against memparse.
    search_cmd = [*OURS, "search", str(tar), "MEMHOG_", "--pid", str(pid), "-o", "json"]
    peer_s = None
    extra = ""
    if peer is not None:
        memparse = [str(peer), "memparse", "--pid", str(pid), "--search", "MEMHOG_", str(tar)]
        search, p = timed_pair(search_cmd, memparse, runs, scratch)
        peer_s = p.seconds
        extra = f"  peer markers {len(set(peer_matches(p.stdout)) & set(expected))}/{len(expected)}"
        extra += f"; cpu ours {search.cpu_seconds:.3f} s peer {p.cpu_seconds:.3f} s"
    else:
        search = timed(search_cmd, runs, scratch)
    ratio_line(
        "analyze --search (full report) vs memparse --search", ours, peer_s, None, analyze_line
    )
    assert sorted(search_matches(search.stdout)) == expected, "search missed memhog markers"
    ratio_line("search vs memparse --search", search, peer_s, 3.0, extra)


def bench_generated(scratch: Path, peer: Path | None, runs: int) -> None:
    from benchmarks.large_archive import generate

    print(f"\n== Generated archive (> 2 GiB of pages; median of {runs})")
    start = time.perf_counter()
    large = generate(scratch)
    size = large.path.stat().st_size
    print(
        f"generated {size / 2**30:.2f} GiB in {time.perf_counter() - start:.1f} s, "
        f"{len(large.marker_vaddrs)} markers planted (many straddle pages/chunks/entries)"
    )
    marker = large.marker.decode()
    expected = {f"0x{v:x}" for v in large.marker_vaddrs}

    report = scratch / "large.json"
    cmd = [
        *OURS,
        "analyze",
        str(large.path),
        "--search",
        marker,
        "--max-matches",
        "100000",
        "-o",
        "json",
        "-O",
        str(report),
    ]
    ours = timed(cmd, runs, scratch)
    found = set(our_matches(report))
    extra = f"  markers ours {len(found & expected)}/{len(expected)}"
    peer_s = None
    if peer is not None:
        inspect = timed([str(peer), "inspect", "--all", str(large.path)], runs, scratch)
        mem = timed(
            [str(peer), "memparse", "--pid", str(large.pid), "--search", marker, str(large.path)],
            runs,
            scratch,
        )
        peer_s = inspect.seconds + mem.seconds
        extra += f", peer {len(set(peer_matches(mem.stdout)) & expected)}/{len(expected)}"
        extra += f"; peer rss {max(inspect.peak_rss_mb, mem.peak_rss_mb):.0f} MB"
    ratio_line("analyze --search vs inspect --all + memparse --search", ours, peer_s, 2.0, extra)
    rss_ok = "OK" if ours.peak_rss_mb < 200 else "MISSED"
    print(
        f"{'peak RSS of analyze --search (goal < 200 MB)':<58} {ours.peak_rss_mb:.1f} MB {rss_ok}"
    )

    pages = scratch / "pages.img"
    with tarfile.open(large.path) as tf, pages.open("wb") as dst:
        shutil.copyfileobj(tf.extractfile(large.pages_member), dst, 8 << 20)  # type: ignore[arg-type]
    grep = timed(["grep", "-c", "-F", marker, str(pages)], runs, scratch)
    pages.unlink()
    search_cmd = [
        *OURS,
        "search",
        str(large.path),
        marker,
        "--pid",
        str(large.pid),
        "--max-matches",
        "0",
        "-o",
        "json",
    ]
    search = timed(search_cmd, runs, scratch)
    count = json.loads(search.stdout)["memory"]["searches"][0]["totalMatches"]
    within = grep.seconds and search.seconds / grep.seconds
    verdict = "OK" if within <= 2 else "MISSED"
    print(
        f"{'search (in the tar) vs grep -c -F (extracted pages)':<58} ours "
        f"{search.seconds:7.3f} s  rss {search.peak_rss_mb:6.1f} MB  grep {grep.seconds:7.3f} s"
        f"  ours/grep {within:4.2f}x (target <= 2x) {verdict}; counts ours "
        f"{count} grep {grep.stdout.strip()} (lines)"
    )
    print(
        f"{'full analyze --search vs grep -c -F':<58} ours/grep "
        f"{ours.seconds / grep.seconds:4.2f}x (information)"
    )


def bench_pagemap_decode() -> None:
    """In-process: decoding a 200 000-entry pagemap, ours vs pycriu.images.load (pb2dict)."""
    from benchmarks.large_archive import _pagemap
    from pycriu import images

    from forensic_checkpoint.analysis.memory import parse_pagemap

    data = _pagemap(1, [(0x10000000 + i * 0x3000, 2, 4) for i in range(200_000)])
    t0 = time.perf_counter()
    pm = parse_pagemap(data)
    ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    img = images.loads(data)
    peer = time.perf_counter() - t0
    assert len(pm.entries) == len(img["entries"]) - 1 == 200_000
    print(
        f"\n== Pagemap decode, 200 000 entries (in-process)\n"
        f"{'parse_pagemap vs pycriu.images.load':<58} ours {ours:7.3f} s  pycriu {peer:7.3f} s"
        f"  ratio {peer / ours:5.1f}x"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per small figure")
    parser.add_argument("--large-runs", type=int, default=3, help="runs per large figure")
    parser.add_argument("--skip-large", action="store_true", help="skip memhog-large")
    parser.add_argument("--skip-generated", action="store_true", help="skip the 2 GiB archive")
    args = parser.parse_args(argv)
    peer = peer_binary()
    if peer is not None:
        version = subprocess.run(
            [str(peer), "--version"], capture_output=True, text=True, check=False
        )
        print(f"peer: {version.stdout.strip()} ({peer})")
    print(f"cpus {os.cpu_count()}, load average at start {os.getloadavg()[0]:.2f}")
    scratch = Path(tempfile.mkdtemp(prefix="fc-bench-"))
    try:
        bench_pagemap_decode()
        bench_small(scratch, peer, args.runs)
        if not args.skip_large:
            bench_memhog(shared_samples(), scratch, peer, args.large_runs)
        if not args.skip_generated:
            bench_generated(scratch, peer, args.large_runs)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"\nload average at end {os.getloadavg()[0]:.2f} (other work on the host skews figures)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
