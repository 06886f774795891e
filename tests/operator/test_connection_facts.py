"""kopf logs in with the credentials of the operator's kubernetes client
(``k8s.connection.connection_facts``). In a pod that client comes from the in-cluster loader,
which stores the token as ``bearer <token>`` (lower case) and re-reads the rotated file through
its refresh hook; a real in-cluster operator got 401 until both were handled."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from forensic_checkpoint.k8s import client as kube
from forensic_checkpoint.k8s.connection import connection_facts


def in_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, token: str) -> Any:
    (tmp_path / "token").write_text(token)
    (tmp_path / "ca.crt").write_text("a CA (not read here)")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    return kube.in_cluster(service_account_dir=tmp_path)


def test_an_in_cluster_token_is_sent_without_the_loaders_scheme(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = in_cluster(tmp_path, monkeypatch, "eyJpod-token")
    facts = connection_facts(api)
    assert facts.token == "eyJpod-token"
    assert facts.server == "https://10.96.0.1:443"


def test_each_login_reads_the_token_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    api = in_cluster(tmp_path, monkeypatch, "first")
    assert connection_facts(api).token == "first"

    def rotated(cfg: Any) -> None:  # what the loader's hook does once the kubelet rotated it
        cfg.api_key["BearerToken"] = "bearer second"

    api.configuration.refresh_api_key_hook = rotated
    assert connection_facts(api).token == "second"


def test_a_kubeconfig_token_keeps_working() -> None:
    api = kube.ApiClient()
    api.configuration.host = "https://127.0.0.1:6443"
    api.configuration.api_key = {"authorization": "Bearer abc"}
    assert connection_facts(api).token == "abc"
