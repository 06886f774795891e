"""forensic_checkpoint.logs: the JSON lines a log collector parses, and the text format."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from forensic_checkpoint import logs


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def lines(err: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in err.splitlines()]


def test_json_line_has_time_level_logger_message_and_extras(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logs.configure("json", level="debug")
    before = datetime.now(UTC)
    log = logging.getLogger("forensic_checkpoint.agent.capture.service")
    log.debug("capture %s done", "uid-1-app", extra={"key": "uid-1-app", "path": Path("/x")})
    log.info("two\nlines", extra={"time": "caller's own", "sizeBytes": 9})
    (debug, info) = lines(capsys.readouterr().err)

    assert debug["level"] == "DEBUG"
    assert debug["logger"] == "forensic_checkpoint.agent.capture.service"
    assert debug["message"] == "capture uid-1-app done"
    assert (debug["key"], debug["path"]) == ("uid-1-app", "/x")  # not JSON: logged as text
    stamp = datetime.fromisoformat(debug["time"])
    assert stamp.utcoffset() == timedelta(0)
    assert before - timedelta(seconds=1) <= stamp <= datetime.now(UTC)
    # A multi-line message stays one line; an extra never overwrites the formatter's fields.
    assert info["message"] == "two\nlines"
    assert info["extra_time"] == "caller's own" and info["time"] != "caller's own"
    assert info["sizeBytes"] == 9


def test_exception_is_one_field(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("json")
    try:
        raise ValueError("bad archive")
    except ValueError:
        logging.getLogger("t").exception("analysis failed")
    (entry,) = lines(capsys.readouterr().err)
    assert entry["level"] == "ERROR" and entry["message"] == "analysis failed"
    assert entry["exception"].startswith("Traceback")
    assert "ValueError: bad archive" in entry["exception"]


def test_kopf_object_reference_becomes_object_and_its_internals_are_dropped(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """kopf's per-object loggers put the object in ``k8s_ref`` and its settings object (not
    JSON) in ``settings``: the line carries ``object`` like kopf's own JSON format."""
    import kopf

    logs.configure("json")
    ref = {"kind": "ForensicCheckpoint", "name": "c1", "namespace": "shop", "uid": "u"}
    # A real settings object: kopf's event poster, left on this logger by an in-process kopf
    # run earlier in the session, reads it. Posting is off, so no Event is queued.
    settings = kopf.OperatorSettings()
    settings.posting.enabled = False
    logging.getLogger("kopf.objects").info(
        "Handler succeeded.", extra={"k8s_ref": ref, "settings": settings, "k8s_skip": False}
    )
    (entry,) = lines(capsys.readouterr().err)
    assert entry["object"] == ref
    assert not {"settings", "k8s_skip", "k8s_ref"} & set(entry)


def test_level_filters_and_reconfiguring_does_not_duplicate(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logging.basicConfig(format="%(message)s")  # an earlier set-up that would print twice
    logs.configure("json", level=logging.WARNING)
    logs.configure("json", level="WARNING")
    logging.getLogger("t").info("hidden")
    logging.getLogger("t").warning("shown")
    assert [e["message"] for e in lines(capsys.readouterr().err)] == ["shown"]


def test_text_format(capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("text")
    logging.getLogger("forensic_checkpoint.agent").warning("kubelet %s", "slow")
    err = capsys.readouterr().err
    assert err.endswith(" WARNING forensic_checkpoint.agent: kubelet slow\n")
    with pytest.raises(ValueError, match="xml"):
        logs.configure("xml")  # type: ignore[arg-type]


def test_agent_flags_default_to_json_off_a_terminal_and_follow_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Under pytest stderr is not a terminal, as in a pod: the agent's default is JSON."""
    from forensic_checkpoint.cli import agent

    def parse(*argv: str) -> argparse.Namespace:
        parser = argparse.ArgumentParser()
        agent.add_arguments(parser)
        required = ["--tls-cert", "c", "--tls-key", "k", "--operator-identity", "x"]
        return parser.parse_args([*required, *argv])

    monkeypatch.delenv("FORENSIC_LOG_FORMAT", raising=False)
    monkeypatch.delenv("FORENSIC_LOG_LEVEL", raising=False)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    assert (parse().log_format, parse().log_level) == ("json", "INFO")
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert parse().log_format == "text"
    monkeypatch.setenv("FORENSIC_LOG_FORMAT", "json")
    monkeypatch.setenv("FORENSIC_LOG_LEVEL", "DEBUG")
    assert (parse().log_format, parse().log_level) == ("json", "DEBUG")
    assert parse("--log-format", "text").log_format == "text"
    with pytest.raises(SystemExit):
        parse("--log-format", "xml")
