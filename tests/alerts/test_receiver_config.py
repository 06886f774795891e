"""The receiver's flags and the refusals at start-up."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from forensic_checkpoint.controller.alerts.auth import TokenFile
from forensic_checkpoint.controller.alerts.config import (
    AlertReceiverConfig,
    add_arguments,
    from_arguments,
)
from forensic_checkpoint.errors import ConfigError


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_no_port_means_no_receiver() -> None:
    assert from_arguments(parse()) is None


def test_flags_become_the_config(tmp_path: Path) -> None:
    token = tmp_path / "token"
    config = from_arguments(
        parse(
            "--alerts-port=9443",
            f"--alerts-token-file={token}",
            "--alerts-rate=2.5",
            "--alerts-burst=7",
            "--alerts-max-concurrent=4",
            "--alerts-pod-label=kubernetes_pod_name",
        )
    )
    assert config is not None
    assert (config.port, config.token_file) == (9443, token)
    assert (config.limits.rate_per_second, config.limits.burst) == (2.5, 7)
    assert config.limits.max_concurrent == 4
    assert config.mapping.pod_label == "kubernetes_pod_name"
    assert config.mapping.namespace_label == "namespace"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "does not run unauthenticated"),
        ({"token_file": Path("t"), "tls_cert_file": Path("c")}, "go together"),
        ({"client_ca_file": Path("ca")}, "needs --alerts-tls-cert"),
        ({"token_file": Path("t"), "max_body_bytes": 10}, "at least 1024"),
    ],
)
def test_invalid_configs_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        AlertReceiverConfig(**kwargs).validate()  # type: ignore[arg-type]


def test_tls_files_that_do_not_load_are_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "c.pem").write_text("not a certificate")
    config = AlertReceiverConfig(
        token_file=tmp_path / "t", tls_cert_file=tmp_path / "c.pem", tls_key_file=tmp_path / "c.pem"
    )
    with pytest.raises(ConfigError, match="TLS files"):
        config.ssl_context()


def test_short_or_missing_token_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        TokenFile(tmp_path / "absent")
    (tmp_path / "short").write_text("abc")
    with pytest.raises(ConfigError, match="shorter than 16"):
        TokenFile(tmp_path / "short")


def test_token_file_keeps_the_old_token_while_the_file_is_missing(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("first-token-0123456789")
    token = TokenFile(path)
    path.unlink()  # the kubelet swapping the Secret's symlink
    assert token.accepts("Bearer first-token-0123456789")
    assert not token.accepts("Bearer other-token-0123456789")
