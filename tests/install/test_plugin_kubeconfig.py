"""`kubectl forensic` resolves ``--kubeconfig``, ``--context`` and ``-n`` as kubectl does, against
the dev cluster's API server, with a kubeconfig of several contexts: the flag over $KUBECONFIG
(whose first file's current-context wins) over ~/.kube/config; the namespace from the flag, else
the context's. Run directly and as kubectl runs it (``kubectl forensic ...``: kubectl passes the
arguments as typed and no flags of its own)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from forensic_checkpoint.api.forensiccheckpoint import ForensicCheckpoint, ForensicCheckpointSpec
from forensic_checkpoint.k8s.checkpoints import ForensicCheckpoints
from forensic_checkpoint_dev.cluster import access, binaries
from forensic_checkpoint_dev.cluster.testing import ClusterHandle

BIN = Path(sys.executable).parent
NAMESPACES = {"ctx-a": "kubeconfig-a", "ctx-b": "kubeconfig-b"}


@pytest.fixture(scope="module")
def configs(local: ClusterHandle, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``two``: contexts ctx-a and ctx-b (the dev cluster, one namespace each) and ``nowhere``
    (a closed port), current ``nowhere``; ``first``: only ``current-context: ctx-b``; ``home``:
    a HOME whose ~/.kube/config is ``two`` with current ctx-a. A ForensicCheckpoint ``probe``
    in each namespace names a different pod."""
    api = local.admin_client()
    for context, namespace in NAMESPACES.items():
        access.ensure_namespace(api, namespace)
        ForensicCheckpoints(api).create(
            ForensicCheckpoint(
                metadata={"name": "probe", "namespace": namespace},
                spec=ForensicCheckpointSpec(pod_name=f"pod-of-{context}"),
            )
        )
    admin = yaml.safe_load(local.kubeconfig.read_text())
    root = tmp_path_factory.mktemp("kubeconfigs")
    two = {
        **admin,
        "clusters": [
            *admin["clusters"],
            {"name": "nowhere", "cluster": {"server": "https://127.0.0.1:9"}},
        ],
        "contexts": [
            *(
                {"name": c, "context": {"cluster": "dev", "user": "dev", "namespace": ns}}
                for c, ns in NAMESPACES.items()
            ),
            {"name": "nowhere", "context": {"cluster": "nowhere", "user": "dev"}},
        ],
        "current-context": "nowhere",
    }
    paths = {"two": root / "two", "first": root / "first", "home": root / "home"}
    paths["two"].write_text(yaml.safe_dump(two))
    paths["first"].write_text(
        yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "current-context": "ctx-b"})
    )
    (paths["home"] / ".kube").mkdir(parents=True)
    (paths["home"] / ".kube" / "config").write_text(
        yaml.safe_dump({**two, "current-context": "ctx-a"})
    )
    # kubectl finds plugins on the PATH: kubectl itself and the plugin, nothing else.
    kubectl_path = root / "bin"
    kubectl_path.mkdir()
    (kubectl_path / "kubectl").symlink_to(binaries.locate("kubectl"))
    (kubectl_path / "kubectl-forensic").symlink_to(BIN / "kubectl-forensic")
    paths["bin"] = kubectl_path
    return paths


def run(
    configs: dict[str, Path], *argv: str, kubeconfig_env: str | None = None, home: str = "none"
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "HOME")}
    env["HOME"] = str(configs["home"]) if home == "home" else str(configs["first"].parent)
    env["PATH"] = f"{configs['bin']}:{env['PATH']}"
    if kubeconfig_env is not None:
        env["KUBECONFIG"] = kubeconfig_env
    return subprocess.run(
        list(argv), capture_output=True, text=True, check=False, timeout=120, env=env
    )


def reported_namespace(done: subprocess.CompletedProcess[str]) -> str:
    """The namespace of the probe that ``report`` printed (its first line names it)."""
    first = done.stdout.splitlines()[0] if done.stdout else ""
    assert first.startswith("ForensicCheckpoint "), (done.stdout, done.stderr)
    namespace = first.split()[1].split("/")[0]
    pod = next(c for c, ns in NAMESPACES.items() if ns == namespace)
    assert f"pod pod-of-{pod} " in done.stdout
    return namespace


@pytest.mark.parametrize("as_kubectl", [False, True], ids=["plugin", "kubectl-forensic"])
def test_context_and_namespace_flags(configs: dict[str, Path], as_kubectl: bool) -> None:
    cmd = ["kubectl", "forensic"] if as_kubectl else [str(BIN / "kubectl-forensic")]
    two = str(configs["two"])
    a, b = NAMESPACES["ctx-a"], NAMESPACES["ctx-b"]
    # the current context of the file: a closed port, so the context decides the cluster too
    done = run(configs, *cmd, "--kubeconfig", two, "report", "probe")
    assert done.returncode == 1, done
    assert "127.0.0.1:9" in done.stderr or "refused" in done.stderr.lower(), done.stderr
    for argv, namespace in [
        (["--kubeconfig", two, "--context", "ctx-a", "report", "probe"], a),
        (["report", "probe", "--context", "ctx-b", "--kubeconfig", two], b),
        (["--context", "ctx-b", "report", "probe", "-n", a, "--kubeconfig", two], a),
        (["-n", b, "--kubeconfig", two, "--context", "ctx-a", "report", "probe"], b),
    ]:
        assert reported_namespace(run(configs, *cmd, *argv)) == namespace, argv


@pytest.mark.parametrize("as_kubectl", [False, True], ids=["plugin", "kubectl-forensic"])
def test_kubeconfig_env_list_and_home(configs: dict[str, Path], as_kubectl: bool) -> None:
    cmd = ["kubectl", "forensic"] if as_kubectl else [str(BIN / "kubectl-forensic")]
    env_list = f"{configs['first'].parent / 'missing'}:{configs['first']}:{configs['two']}"
    # $KUBECONFIG: the first file that sets current-context wins (ctx-b), contexts merge.
    done = run(configs, *cmd, "report", "probe", kubeconfig_env=env_list)
    assert reported_namespace(done) == NAMESPACES["ctx-b"]
    # the flag wins over $KUBECONFIG: the file's own current context, nowhere
    done = run(configs, *cmd, "--kubeconfig", str(configs["home"] / ".kube" / "config"),
               "report", "probe", kubeconfig_env=env_list)  # fmt: skip
    assert reported_namespace(done) == NAMESPACES["ctx-a"]
    # neither: ~/.kube/config
    done = run(configs, *cmd, "report", "probe", home="home")
    assert reported_namespace(done) == NAMESPACES["ctx-a"]


def test_unknown_context_is_one_line_error(configs: dict[str, Path]) -> None:
    done = run(configs, str(BIN / "kubectl-forensic"), "--kubeconfig", str(configs["two"]),
               "--context", "nope", "nodes")  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.strip().endswith(f'context "nope" does not exist in {configs["two"]}')


def test_nodes_takes_the_context(configs: dict[str, Path]) -> None:
    two = str(configs["two"])
    for cmd in (
        [str(BIN / "forensic-checkpoint"), "nodes"],
        ["kubectl", "forensic", "nodes"],
    ):
        assert run(configs, *cmd, "--kubeconfig", two).returncode == 1
        done = run(configs, *cmd, "--kubeconfig", two, "--context", "ctx-a")
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("NODE"), done.stdout
