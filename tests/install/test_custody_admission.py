"""Custody of evidence against a real API server with the chart installed by Helm: what a
namespace editor (the aggregated "edit" role) may not do to a ForensicCheckpoint, and what the
custodian (ClusterRole <release>-custodian, custom verbs `custody` and `reveal`) and the
operator (its `finalize` verb) may. Each refusal comes from the chart's ValidatingAdmissionPolicy
(templates/admission-custody.yaml), which asks the authorizer for the custom verb; each attack
here succeeded before that policy existed (issue 15, items 2 and 7)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest

from forensic_checkpoint.controller.runner import FINALIZER as FINALIZER_NAME
from forensic_checkpoint.domain.evidence.deletion import HOLD_KEY, is_held
from forensic_checkpoint_dev.cluster.control_plane import DevCluster
from forensic_checkpoint_dev.deploy import CHART, NAMESPACE

from .chart import helm, kubectl, run
from .test_chart_cluster import can_i, ensure_namespaces, eventually

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

RELEASE = "fc"
NS = "evidence"
FCP = "forensiccheckpoints.forensic-checkpoint.dev"
HOLD = HOLD_KEY
FINALIZER = FINALIZER_NAME
CUSTODIAN_ROLE = f"{RELEASE}-forensic-checkpoint-custodian"
OPERATOR = f"system:serviceaccount:{NAMESPACE}:{RELEASE}-forensic-checkpoint-operator"
EDITOR, CUSTODIAN = "editor", "custodian"
NEEDS_CUSTODY = f"needs the `custody` verb on {FCP} (ClusterRole {CUSTODIAN_ROLE})"
NEEDS_REVEAL = f"needs the `reveal` verb on {FCP} (ClusterRole {CUSTODIAN_ROLE})"


def kubectl_as(
    cluster: DevCluster, who: str | None, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """kubectl as ``who`` (None: the cluster admin); the caller judges the exit code."""
    identity = [f"--as={who}"] if who else []
    return subprocess.run(
        [str(kubectl()), *args, "-n", NS, *identity, f"--kubeconfig={cluster.kubeconfig}"],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stderr


def refused(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode != 0, f"accepted: {result.stdout}"
    assert "denied request" in result.stderr and message in result.stderr, result.stderr


@pytest.fixture(scope="module")
def cluster(install_cluster: DevCluster) -> Iterator[DevCluster]:
    """The chart installed; "editor" has "edit" in the namespace, "custodian" has "edit" and the
    custodian role there."""
    c = install_cluster
    ensure_namespaces(c, NS)
    run(helm(), "install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--create-namespace",
        kubeconfig=c.kubeconfig)  # fmt: skip
    run(kubectl(), "wait", "--for=condition=Established", f"crd/{FCP}", kubeconfig=c.kubeconfig)
    for who, role in ((EDITOR, "edit"), (CUSTODIAN, "edit"), (CUSTODIAN, CUSTODIAN_ROLE)):
        ok(kubectl_as(c, None, "create", "rolebinding", f"{who}-{role}",
                      f"--clusterrole={role}", f"--user={who}"))  # fmt: skip
    eventually(lambda: can_i(c, EDITOR, "delete", FCP, "-n", NS))
    for verb in ("custody", "reveal"):
        assert not can_i(c, EDITOR, verb, FCP, "-n", NS)
        assert not can_i(c, f"{NS}-admin", verb, FCP, "-n", NS)
        assert can_i(c, CUSTODIAN, verb, FCP, "-n", NS)
    yield c


def checkpoint(
    cluster: DevCluster,
    name: str,
    *,
    hold: str | None = None,
    hold_value: str = "true",
    archive_on_node: bool = True,
    reveal: bool = False,
    who: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Create a ForensicCheckpoint as the operator leaves it after a capture: its finalizer set
    and, with ``archive_on_node``, a container whose archive is still on the node."""
    metadata: dict[str, object] = {"name": name, "finalizers": [FINALIZER]}
    if hold:
        metadata[hold] = {HOLD: hold_value}
    body = {
        "apiVersion": "forensic-checkpoint.dev/v1alpha1",
        "kind": "ForensicCheckpoint",
        "metadata": metadata,
        "spec": {"podName": "web", "analysis": {"searches": ["secret"], "reveal": reveal}},
    }
    created = kubectl_as(cluster, who, "create", "-f", "-", stdin=json.dumps(body))
    if created.returncode == 0:
        status = {"status": {"nodeName": "node-1", "containers": [
            {"name": "app", "captureKey": f"{name}-app", "archiveDeleted": not archive_on_node}
        ]}}  # fmt: skip
        ok(kubectl_as(cluster, None, "patch", FCP, name, "--subresource=status",
                      "--type=merge", "-p", json.dumps(status)))  # fmt: skip
    return created


def release(cluster: DevCluster, name: str) -> None:
    """Let the object go (the cluster admin holds every verb); it may be gone already."""
    if kubectl_as(cluster, None, "get", FCP, name).returncode != 0:
        return
    ok(kubectl_as(cluster, None, "patch", FCP, name, "--type=merge",
                  "-p", json.dumps({"metadata": {"finalizers": None}})))  # fmt: skip
    kubectl_as(cluster, None, "delete", FCP, name, "--ignore-not-found", "--wait=false")


def lift_hold(section: str) -> str:
    return json.dumps([{"op": "remove", "path": f"/metadata/{section}/{HOLD.replace('/', '~1')}"}])


@pytest.mark.parametrize(
    ("section", "value"), [("annotations", "true"), ("labels", "true"), ("annotations", " TRUE ")]
)
def test_an_editor_cannot_lift_a_hold_a_custodian_can(
    cluster: DevCluster, section: str, value: str
) -> None:
    """Every spelling the operator holds (``is_held``: trimmed, any case) is held here too."""
    assert is_held({section: {HOLD: value}})
    name = f"lift-{section}-{value.strip().lower()}-{len(value)}"
    ok(checkpoint(cluster, name, hold=section, hold_value=value))
    for patch in (lift_hold(section),
                  json.dumps({"metadata": {section: {HOLD: "false"}}})):  # fmt: skip
        kind = "json" if patch.startswith("[") else "merge"
        refused(
            kubectl_as(cluster, EDITOR, "patch", FCP, name, f"--type={kind}", "-p", patch),
            f"lifting a legal hold ({HOLD}) {NEEDS_CUSTODY}",
        )
    # Placing a hold and changing anything else stay open to the editor.
    ok(kubectl_as(cluster, EDITOR, "annotate", FCP, name, "note=kept"))
    ok(kubectl_as(cluster, CUSTODIAN, "patch", FCP, name, "--type=json", "-p", lift_hold(section)))
    release(cluster, name)


def test_an_editor_cannot_delete_held_evidence_a_custodian_can(cluster: DevCluster) -> None:
    ok(checkpoint(cluster, "held", hold="annotations", archive_on_node=False))
    refused(
        kubectl_as(cluster, EDITOR, "delete", FCP, "held", "--wait=false"),
        f"deleting held evidence ({HOLD}) {NEEDS_CUSTODY}",
    )
    refused(
        kubectl_as(cluster, EDITOR, "delete", FCP, "--all", "--wait=false"),
        NEEDS_CUSTODY,
    )
    assert kubectl_as(cluster, None, "get", FCP, "held").returncode == 0
    ok(kubectl_as(cluster, CUSTODIAN, "delete", FCP, "held", "--wait=false"))
    release(cluster, "held")
    # Evidence that is not held is the editor's to delete, as before.
    ok(checkpoint(cluster, "not-held"))
    ok(kubectl_as(cluster, EDITOR, "delete", FCP, "not-held", "--wait=false"))
    release(cluster, "not-held")


@pytest.mark.parametrize("hold", [None, "labels"])
def test_an_editor_cannot_remove_the_finalizer_while_an_archive_is_on_a_node(
    cluster: DevCluster, hold: str | None
) -> None:
    name = f"finalizer-{hold or 'unheld'}"
    ok(checkpoint(cluster, name, hold=hold, archive_on_node=hold is None))
    remove = json.dumps([{"op": "remove", "path": "/metadata/finalizers"}])
    if hold is None:  # the editor may delete it; the operator must still clean up
        ok(kubectl_as(cluster, EDITOR, "delete", FCP, name, "--wait=false"))
    refused(
        kubectl_as(cluster, EDITOR, "patch", FCP, name, "--type=json", "-p", remove),
        f"removing the finalizer {FINALIZER}",
    )
    refused(
        kubectl_as(cluster, EDITOR, "patch", FCP, name, "--type=json", "-p", remove),
        NEEDS_CUSTODY,
    )
    ok(kubectl_as(cluster, CUSTODIAN, "patch", FCP, name, "--type=json", "-p", remove))
    release(cluster, name)


def test_the_operator_removes_its_finalizer_from_held_evidence(cluster: DevCluster) -> None:
    """What the operator does after keeping a held archive (or deleting an unheld one)."""
    ok(checkpoint(cluster, "operator-held", hold="annotations"))
    assert not can_i(cluster, OPERATOR, "custody", FCP, "-n", NS)
    ok(kubectl_as(cluster, CUSTODIAN, "delete", FCP, "operator-held", "--wait=false"))
    remove = json.dumps([{"op": "remove", "path": "/metadata/finalizers"}])
    ok(kubectl_as(cluster, OPERATOR, "patch", FCP, "operator-held", "--type=json", "-p", remove))
    eventually(lambda: kubectl_as(cluster, None, "get", FCP, "operator-held").returncode != 0)


def test_an_editor_whose_archive_is_gone_may_remove_the_finalizer(cluster: DevCluster) -> None:
    """Nothing left on a node: no custody question (an operator that is gone does not strand
    the editor's own objects)."""
    ok(checkpoint(cluster, "cleaned", archive_on_node=False))
    remove = json.dumps([{"op": "remove", "path": "/metadata/finalizers"}])
    ok(kubectl_as(cluster, EDITOR, "patch", FCP, "cleaned", "--type=json", "-p", remove))
    release(cluster, "cleaned")


def test_reveal_needs_the_reveal_verb(cluster: DevCluster) -> None:
    refused(
        checkpoint(cluster, "reveal-editor", reveal=True, who=EDITOR),
        "spec.analysis.reveal: true shows secrets in clear text to every reader and "
        + NEEDS_REVEAL,
    )
    ok(checkpoint(cluster, "redacted-editor", who=EDITOR))
    ok(checkpoint(cluster, "reveal-custodian", reveal=True, who=CUSTODIAN))
    for name in ("redacted-editor", "reveal-custodian"):
        release(cluster, name)
