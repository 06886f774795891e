"""A cluster subcommand without its extra installed says which extra to install, no traceback."""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest

from forensic_checkpoint.cli.main import EXIT_ERROR, main


@pytest.mark.parametrize(("module", "extra"), [("kopf", "operator"), ("boto3", "export")])
def test_a_missing_extra_module_is_a_one_line_remedy(
    module: str, extra: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = importlib.import_module

    def without_extra(name: str, package: str | None = None) -> ModuleType:
        if name == "forensic_checkpoint.cli.operator":
            raise ModuleNotFoundError(f"No module named '{module}'", name=module)
        return real(name, package)

    monkeypatch.setattr(importlib, "import_module", without_extra)
    assert main(["operator"]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert f"needs the '{extra}' extra ({module} is not installed)" in err
    assert f"[{extra}]" in err and len(err.strip().splitlines()) == 1


def test_another_missing_module_is_not_hidden(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Not passed off as a missing extra: a one-line internal error (a bug) naming the module,
    and the traceback under FORENSIC_CHECKPOINT_DEBUG=1."""

    def broken(name: str, package: str | None = None) -> ModuleType:
        raise ModuleNotFoundError("No module named 'no_such_thing'", name="no_such_thing")

    monkeypatch.setattr(importlib, "import_module", broken)
    monkeypatch.delenv("FORENSIC_CHECKPOINT_DEBUG", raising=False)
    assert main(["operator"]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "internal error" in err and "no_such_thing" in err and "extra" not in err
    monkeypatch.setenv("FORENSIC_CHECKPOINT_DEBUG", "1")
    with pytest.raises(ModuleNotFoundError):
        main(["operator"])


def test_kubectl_forensic_without_the_operator_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import builtins

    from forensic_checkpoint.cli import kubectl_forensic

    real = builtins.__import__

    def without_kubernetes(name: str, *args: object, **kwargs: object) -> ModuleType:
        if name == "forensic_checkpoint.k8s.client":
            raise ModuleNotFoundError("No module named 'kubernetes'", name="kubernetes")
        return real(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", without_kubernetes)
    assert kubectl_forensic.main(["nodes"]) == 1
    err = capsys.readouterr().err
    assert "kubectl forensic nodes: error: this command needs the 'operator' extra" in err
