"""kubectl's rules for the kubeconfig files, the context and the namespace
(forensic_checkpoint.k8s.kubeconfig), which the plugin, `nodes` and `verify --ref` share."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from forensic_checkpoint.cli.kubectl_forensic import build_parser
from forensic_checkpoint.errors import ConfigError
from forensic_checkpoint.k8s.kubeconfig import resolve


def _write(path: Path, current: str | None, contexts: dict[str, str | None]) -> Path:
    config: dict[str, object] = {
        "apiVersion": "v1",
        "kind": "Config",
        "contexts": [
            {
                "name": name,
                "context": {"cluster": "c", "user": "u", **({"namespace": ns} if ns else {})},
            }
            for name, ns in contexts.items()
        ],
    }
    if current is not None:
        config["current-context"] = current
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    first = _write(tmp_path / "first", "a", {"a": "ns-a"})
    second = _write(tmp_path / "second", "b", {"a": "shadowed", "b": "ns-b", "c": None})
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    return first, second


def test_the_first_file_of_kubeconfig_wins(
    files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    first, second = files
    missing = tmp_path / "missing"
    monkeypatch.setenv("KUBECONFIG", f"{missing}:{first}:{second}")
    target = resolve()
    assert target.files == (first, second)  # a missing file is skipped, as kubectl does
    # current-context and a context defined twice: the first file's (the library: the last's)
    assert (target.context, target.namespace) == ("a", "ns-a")
    assert resolve(context="b").namespace == "ns-b"
    assert resolve(context="c").namespace == "default"
    assert resolve(context="b", namespace="given").namespace == "given"


def test_the_kubeconfig_flag_is_that_file_only(
    files: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = files
    monkeypatch.setenv("KUBECONFIG", str(first))
    target = resolve(str(second))
    assert (target.files, target.context, target.namespace) == ((second,), "b", "ns-b")
    with pytest.raises(ConfigError, match='context "nope" does not exist'):
        resolve(str(second), context="nope")


def test_home_kube_config_is_the_default(files: tuple[Path, Path], tmp_path: Path) -> None:
    home_config = tmp_path / "home" / ".kube" / "config"
    home_config.parent.mkdir(parents=True)
    _write(home_config, "b", {"b": "ns-b"})
    assert resolve() == resolve(str(home_config))
    assert resolve().namespace == "ns-b"


@pytest.mark.parametrize(
    "argv",
    [
        ["--context", "x", "-n", "ns", "--kubeconfig", "k", "report", "r"],
        ["report", "r", "--context", "x", "-n", "ns", "--kubeconfig", "k"],
        ["--context", "x", "report", "-n", "ns", "r", "--kubeconfig", "k"],
    ],
)
def test_plugin_takes_kubectls_flags_before_or_after_the_subcommand(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert (args.context, args.namespace, args.kubeconfig) == ("x", "ns", "k")


def test_plugin_flags_default_to_none_for_every_subcommand() -> None:
    args = build_parser().parse_args(["nodes"])
    assert (args.context, args.namespace, args.kubeconfig) == (None, None, None)
