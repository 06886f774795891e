"""What users type, with the real kubectl against the dev cluster: ``kubectl wait`` on a failed
and on a completed capture, ``kubectl get fcp`` (and ``-o wide``) as the README shows it, and
``kubectl explain`` of the three kinds.

kubectl wait never returns early on ``Ready=False`` (k8s.io/kubectl pkg/cmd/wait/condition.go
compares the status and waits on), so a failure makes ``Failed`` and ``Stalled`` True and
``Reconciling`` False at once; these tests time the documented commands against that.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest
from tests.operator.operator_e2e_support import NAMESPACE, create_pod
from tests.operator.test_doc_examples import printer_columns

from forensic_checkpoint.api import crds
from forensic_checkpoint_dev.cluster import binaries
from forensic_checkpoint_dev.stack import LocalStack

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
BLOG_ARCHIVE = REPO / "tests" / "data" / "counter-blog-crio.tar.zst"
#: What each test saw, printed at the end of the module's run (the report quotes it).
SEEN: list[str] = []


def kubectl(stack: LocalStack, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    argv = [str(binaries.locate("kubectl")), "--kubeconfig", str(stack.cluster.kubeconfig)]
    started = time.monotonic()
    done = subprocess.run(
        [*argv, "-n", NAMESPACE, *args], capture_output=True, text=True, check=False, timeout=180
    )
    elapsed = time.monotonic() - started
    SEEN.append(f"$ kubectl {' '.join(args)}   # rc={done.returncode} in {elapsed:.1f}s\n"
                f"{done.stdout}{done.stderr}")  # fmt: skip
    return done, elapsed


def test_kubectl_wait_returns_at_once_on_a_failed_capture(stack: LocalStack) -> None:
    # The pod does not exist: the operator fails the checkpoint (PodNotFound) on its first pass.
    stack.create_checkpoint(NAMESPACE, "ux-failed", {"podName": "ux-no-such-pod"})
    # Started before the failure is written, with a long timeout: each returns when it happens.
    for condition in ("Failed", "Stalled", "Reconciling=false"):
        done, elapsed = kubectl(
            stack, "wait", f"--for=condition={condition}", "fcp/ux-failed", "--timeout=120s"
        )
        assert done.returncode == 0, done.stderr
        assert elapsed < 30, elapsed
        assert "condition met" in done.stdout
    done, elapsed = kubectl(
        stack, "wait", "--for=jsonpath={.status.phase}=Failed", "fcp/ux-failed", "--timeout=60s"
    )
    assert done.returncode == 0 and elapsed < 30, done.stderr
    # Ready never turns True: kubectl waits out its timeout and fails (what the docs say).
    done, elapsed = kubectl(stack, "wait", "--for=condition=Ready", "fcp/ux-failed", "--timeout=3s")
    assert done.returncode != 0
    assert "timed out" in done.stderr
    assert 2.5 < elapsed < 20
    # -o wide says why.
    done, _ = kubectl(stack, "get", "fcp/ux-failed", "-o", "wide")
    header, row = done.stdout.splitlines()
    assert row[header.index("REASON") :].split()[0] == "PodNotFound"
    assert row[header.index("PHASE") :].split()[0] == "Failed"


def test_kubectl_wait_and_get_on_a_completed_capture(stack: LocalStack) -> None:
    create_pod(stack, "ux-counters", "node-3", containers=("counter",), archive=str(BLOG_ARCHIVE))
    stack.create_checkpoint(NAMESPACE, "ux-blog", {"podName": "ux-counters"})
    done, elapsed = kubectl(
        stack,
        "wait",
        "--for=jsonpath={.status.phase}=Completed",
        "fcp/ux-blog",
        "--timeout=120s",
    )
    assert done.returncode == 0, done.stderr
    for condition in ("Ready", "Reconciling=false", "Suspicious=false"):
        done, elapsed = kubectl(
            stack, "wait", f"--for=condition={condition}", "fcp/ux-blog", "--timeout=30s"
        )
        assert done.returncode == 0, done.stderr
        assert elapsed < 10
    done, _ = kubectl(stack, "get", "fcp", "ux-blog")
    header, row = done.stdout.splitlines()
    assert header.split() == printer_columns(wide=False)  # as README.md shows (a test checks)
    assert row[header.index("SUSPICIOUS") :].split()[0] == "False"
    size = row[header.index("SIZE") :].split()[:2]
    assert re.fullmatch(r"\d+\.\d", size[0]) and size[1] == "MiB", row
    done, _ = kubectl(stack, "get", "fcp", "ux-blog", "-o", "wide")
    header, row = done.stdout.splitlines()
    assert header.split() == printer_columns(wide=True)
    assert row[header.index("REASON") :].split()[0] == "Completed"


@pytest.mark.parametrize(
    ("kind", "title"),
    [
        ("forensiccheckpoint", "A forensic checkpoint of one pod's containers"),
        ("forensicnode", "A node's forensic agent and its capture readiness"),
        ("forensiccapturepolicy", "Which alerts (Alertmanager, Falcosidekick)"),
    ],
)
def test_kubectl_explain_describes_each_kind_and_field(
    stack: LocalStack, kind: str, title: str
) -> None:
    done, _ = kubectl(stack, "explain", kind)
    assert done.returncode == 0, done.stderr
    assert title in " ".join(done.stdout.split())
    model = next(m for m in crds.root_models() if m.crd.singular == kind)
    schema = crds.openapi_schema(model)
    for top in ("spec", "status"):
        if top not in schema["properties"]:
            continue
        done, _ = kubectl(stack, "explain", f"{kind}.{top}")
        assert done.returncode == 0, done.stderr
        text = " ".join(done.stdout.split())
        # Every field of spec/status is listed with its description, none "<empty>".
        for name, prop in schema["properties"][top]["properties"].items():
            assert name in text, name
            assert " ".join(prop["description"].split())[:60] in text, name
        assert "<empty>" not in done.stdout
    done, _ = kubectl(stack, "explain", kind, "--recursive")
    assert done.returncode == 0 and "<empty>" not in done.stdout


def test_print_what_kubectl_showed() -> None:
    print("\n\n".join(SEEN))
