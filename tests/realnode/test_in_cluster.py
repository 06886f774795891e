"""`make e2e-cluster` as a test: e2e/real-cluster.sh, unchanged, on this machine's real node.

The chart installed with the image `make image` built, its operator and agent as real pods
(probes, hostPaths, Pod Security, resource limits, NetworkPolicy enforced by kube-router's
firewall), `helm test`, the blog capture, a `helm upgrade` during a capture (one kubelet call),
the kubectl plugin's capture and get-archive (through the API server, as a custodian with only
the chart's roles; refused without pods/portforward), both kubelet credentials, Alertmanager
through the receiver Service, a pod without the allowed labels refused by the NetworkPolicies,
and `helm uninstall` with its clean-up hook (no ForensicNode left). The script brings up and
takes down its own real node, so this test runs before any test of the session's real node
(``real_env``) starts one: one real node per machine.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO

import pytest
from tests.realnode.conftest import SKIP_ENV
from tests.realnode.support import REPO

from forensic_checkpoint_dev import image
from forensic_checkpoint_dev.cluster import binaries

#: A cached run takes about two minutes here; the bound is for a loaded machine.
TIMEOUT = 1200
#: Seconds the script's clean-up (its EXIT trap: helm uninstall, the real node down) may take
#: after a SIGTERM.
CLEANUP = 120


def _run(script: list[str], env: dict[str, str], log: IO[str]) -> int:
    """The script in its own process group. Past TIMEOUT (or on any interruption) the whole
    group gets SIGTERM, so the script's EXIT trap takes its real node down and frees the node
    lock; the real-node tests after this one would otherwise wait for a node nobody stops."""
    proc = subprocess.Popen(script, env=env, stdout=log, stderr=log, start_new_session=True)
    try:
        return proc.wait(timeout=TIMEOUT)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=CLEANUP)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        raise


# The suite's 300 s per test is for one test's own work; this one runs a whole install.
@pytest.mark.timeout(TIMEOUT + CLEANUP + 60)
def test_the_chart_runs_the_whole_flow_in_pods_on_the_real_node(tmp_path: Path) -> None:
    if os.environ.get(SKIP_ENV) == "1":
        pytest.skip(f"{SKIP_ENV}=1: real-node tests skipped on purpose")
    if not image.archive_path().is_file():
        pytest.fail(f"no image archive {image.archive_path()}: run `make image`", pytrace=False)
    env = {
        **os.environ,
        "TOOLS_DIR": str(binaries.tools_dir()),
        "VENV": str(Path(sys.executable).parent.parent),
        "CLUSTER_DIR": str(tmp_path / "cluster"),
        "TMPDIR": str(tmp_path),
    }
    script = ["bash", str(REPO / "e2e" / "real-cluster.sh")]
    with (tmp_path / "e2e.log").open("w+") as log:  # kept for a failure's post-mortem
        code = _run(script, env, log)
        log.seek(0)
        out = log.read()
    assert code == 0, out[-6000:]
    assert "assert-blog: ok:" in out
    assert "during-upgrade: Completed, 1 kubelet call" in out
    # Through the API server (port-forward), as a custodian with only the chart's roles, with
    # no pod DNS on this machine and the agents' CA from the chart's ConfigMap.
    assert re.search(
        r"get-archive: \S+, sha256 [0-9a-f]{64}, \d+ bytes in [\d.]+ s through the API", out
    )
    refused = re.search(r"get-archive without pods/portforward: (.*)", out)
    assert refused is not None, out[-3000:]
    assert "port-forward to pod forensic-checkpoint/" in refused[1] and "403" in refused[1]
    assert 'cannot get resource "pods/portforward"' in refused[1]
    assert "get and create pods/portforward" in refused[1]
    assert re.search(r"alert capture \S+: Completed", out)
    calls = re.search(r"checkpoint calls: kubelet (\d+), containerd (\d+)", out)
    assert calls is not None and calls[1] == calls[2] and int(calls[1]) >= 4
    assert "helm test: passed" in out
    # NetworkPolicy enforced (kube-router's firewall): the operator reaches its agent, a pod
    # without the allowed labels reaches no port of either.
    assert "network policy: enforced; the operator reaches its agent" in out
    assert len(re.findall(r"counter pod -> \S+ \(\S+\): closed", out)) == 3
    assert "helm uninstall: left the CRDs and the held ForensicCheckpoint blog" in out
    assert "no ForensicNode, grant, CSR, ServiceAccount, Role, Job or pod" in out
    assert "dev cluster in" in out and "stopped; no process or port left" in out
