"""e2e/install-chart.sh, the install step of e2e/kind.sh, run unchanged against the dev cluster:
namespace and Pod Security label, the kubelet client certificate through a real CSR, and the
chart with e2e/values.yaml. (The capture step runs in test_kubectl_plugin.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from forensic_checkpoint_dev.cluster.control_plane import DevCluster

from .chart import NO_POD_HOOKS, REPO, documents, helm, kubectl, run

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def test_install_script(install_cluster: DevCluster) -> None:
    c = install_cluster
    env = {
        **os.environ,
        "KUBECONFIG": str(c.kubeconfig),
        "KUBECTL": str(kubectl()),
        "HELM": str(helm()),
        "KUBECTL_FORENSIC": str(Path(sys.executable).parent / "kubectl-forensic"),
        "FC_NAMESPACE": "fc-e2e",
    }
    for _ in range(2):  # idempotent: kind.sh may be re-run on a kept cluster
        result = subprocess.run(
            ["bash", str(REPO / "e2e" / "install-chart.sh")],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
    k = kubectl()
    labels = run(k, "get", "namespace", "fc-e2e", "-o", "jsonpath={.metadata.labels}",
                 kubeconfig=c.kubeconfig).stdout  # fmt: skip
    assert '"pod-security.kubernetes.io/enforce":"privileged"' in labels
    secret_type = run(k, "get", "secret", "forensic-checkpoint-kubelet-client", "-n", "fc-e2e",
                      "-o", "jsonpath={.type}", kubeconfig=c.kubeconfig).stdout  # fmt: skip
    assert secret_type == "kubernetes.io/tls"
    manifest = run(helm(), "get", "manifest", "forensic-checkpoint", "-n", "fc-e2e",
                   kubeconfig=c.kubeconfig).stdout  # fmt: skip
    docs = documents(manifest)
    mounted = next(d for d in docs if d["kind"] == "DaemonSet")["spec"]["template"]["spec"]
    secret_volume = next(v for v in mounted["volumes"] if v["name"] == "kubelet-client")
    assert secret_volume["secret"]["secretName"] == "forensic-checkpoint-kubelet-client"
    present = run(k, "get", "-f", "-", "-o", "name", kubeconfig=c.kubeconfig, stdin=manifest)
    assert len(present.stdout.split()) == len(docs)
    run(
        helm(),
        "uninstall",
        "forensic-checkpoint",
        "-n",
        "fc-e2e",
        "--wait",
        *NO_POD_HOOKS,
        kubeconfig=c.kubeconfig,
    )
