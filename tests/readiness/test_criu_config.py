"""The CRIU configuration writer against a real directory tree standing in for the node's /."""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path

import pytest

from forensic_checkpoint.agent.readiness.criu_config import (
    ALLOWED_OPTIONS,
    CRUN_CONF,
    DEFAULT_CONF,
    HEADER,
    MIB,
    RUNC_CONF,
    ConfigAction,
    ConfigState,
    CriuConfigSettings,
    parse_options,
    parse_size,
    reconcile_criu_config,
    render,
)
from forensic_checkpoint.errors import ConfigError

ON = CriuConfigSettings(enabled=True)
OFF = CriuConfigSettings(enabled=False)
# What an administrator typically has: the documented workaround, written by hand.
FOREIGN = "tcp-established\n"


def edited(text: str) -> str:
    """The agent's file after someone appended a line by hand."""
    return text + "ext-unix-sk\n"


@dataclass(frozen=True)
class Case:
    name: str
    before: str | None  # content of runc.conf before, None = no file
    settings: CriuConfigSettings
    state: ConfigState
    action: ConfigAction
    after: str | None  # content after; "same" keeps `before`


CASES = [
    Case("creates the file", None, ON, ConfigState.MANAGED, ConfigAction.CREATED, render(ON)),
    Case("idempotent", render(ON), ON, ConfigState.MANAGED, ConfigAction.UNCHANGED, render(ON)),
    Case(
        "updates its own file to new settings",
        render(ON),
        CriuConfigSettings(enabled=True, ghost_limit_bytes=64 * MIB),
        ConfigState.MANAGED,
        ConfigAction.UPDATED,
        render(CriuConfigSettings(enabled=True, ghost_limit_bytes=64 * MIB)),
    ),
    Case(
        "foreign file is a conflict", FOREIGN, ON, ConfigState.CONFLICT, ConfigAction.NONE, "same"
    ),
    Case(
        "modified own file is a conflict",
        edited(render(ON)),
        ON,
        ConfigState.CONFLICT,
        ConfigAction.NONE,
        "same",
    ),
    Case(
        "removes its own file when disabled",
        render(ON),
        OFF,
        ConfigState.ABSENT,
        ConfigAction.REMOVED,
        None,
    ),
    Case("disabled and nothing there", None, OFF, ConfigState.ABSENT, ConfigAction.NONE, None),
    Case(
        "disabled leaves a foreign file",
        FOREIGN,
        OFF,
        ConfigState.FOREIGN,
        ConfigAction.NONE,
        "same",
    ),
    Case(
        "disabled does not remove a modified own file",
        edited(render(ON)),
        OFF,
        ConfigState.CONFLICT,
        ConfigAction.NONE,
        "same",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_reconcile(tmp_path: Path, case: Case) -> None:
    path = tmp_path / RUNC_CONF
    if case.before is not None:
        path.parent.mkdir(parents=True)
        path.write_text(case.before)
    result = reconcile_criu_config(case.settings, root=tmp_path)
    assert (result.state, result.action) == (case.state, case.action), result.message
    assert result.path == str(path)
    expected = case.before if case.after == "same" else case.after
    if expected is None:
        assert not path.exists()
    else:
        assert path.read_text() == expected
    assert (
        not [p.name for p in path.parent.glob(".forensic-checkpoint-*")]
        if path.parent.exists()
        else True
    )


def test_written_file_is_what_criu_reads(tmp_path: Path) -> None:
    result = reconcile_criu_config(ON, root=tmp_path)
    path = tmp_path / RUNC_CONF
    text = path.read_text()
    assert text.splitlines()[0] == HEADER
    # CRIU ignores '#' lines and reads one option per line (criu/config.c parse_statement).
    assert parse_options(text) == {
        "tcp-established": "",
        "skip-in-flight": "",
        "file-locks": "",
        "ghost-limit": str(256 * MIB),
    }
    assert result.options == parse_options(text)
    assert result.tcp_established
    assert result.ghost_limit_bytes == 256 * MIB
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_idempotent_run_does_not_rewrite(tmp_path: Path) -> None:
    reconcile_criu_config(ON, root=tmp_path)
    path = tmp_path / RUNC_CONF
    before = path.stat()
    again = reconcile_criu_config(ON, root=tmp_path)
    after = path.stat()
    assert again.action is ConfigAction.UNCHANGED
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)


def test_conflict_reports_what_the_foreign_file_breaks(tmp_path: Path) -> None:
    path = tmp_path / RUNC_CONF
    path.parent.mkdir(parents=True)
    path.write_text("# ours, hands off\nimages-dir /srv/criu\n")
    result = reconcile_criu_config(ON, root=tmp_path)
    assert result.state is ConfigState.CONFLICT
    assert "was not written by the agent" in result.message
    assert result.options == {"images-dir": "/srv/criu"}
    assert any("images-dir" in note and "checkpointctl#213" in note for note in result.notes)
    assert any("lacks `tcp-established`" in note for note in result.notes)
    assert not result.tcp_established


def test_a_file_with_our_header_but_no_checksum_line_is_foreign(tmp_path: Path) -> None:
    path = tmp_path / RUNC_CONF
    path.parent.mkdir(parents=True)
    path.write_text(f"{HEADER}\ntcp-established\n")
    assert reconcile_criu_config(OFF, root=tmp_path).state is ConfigState.FOREIGN
    assert path.exists()


def test_notes_name_crun_and_default_config(tmp_path: Path) -> None:
    for rel in (CRUN_CONF, DEFAULT_CONF):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("tcp-established\n")
    result = reconcile_criu_config(ON, root=tmp_path)
    assert result.state is ConfigState.MANAGED
    assert any("crun reads it instead" in note for note in result.notes)
    assert any("default.conf" in note for note in result.notes)
    assert (tmp_path / CRUN_CONF).read_text() == "tcp-established\n"


def test_unwritable_location_is_an_error_not_an_exception(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "criu").write_text("a file where the directory should be")
    result = reconcile_criu_config(ON, root=tmp_path)
    assert result.state is ConfigState.ERROR
    assert "cannot" in result.message


def test_disabling_flags_drops_their_lines() -> None:
    settings = CriuConfigSettings(
        enabled=True, skip_in_flight=False, file_locks=False, ghost_limit_bytes=MIB
    )
    assert settings.option_lines() == ["tcp-established"]


@pytest.mark.parametrize("limit", [MIB - 1, 0, 17 * 1024 * MIB])
def test_ghost_limit_out_of_range_is_rejected(limit: int) -> None:
    with pytest.raises(ConfigError, match="ghostLimitBytes"):
        CriuConfigSettings(enabled=True, ghost_limit_bytes=limit)


@pytest.mark.parametrize(
    ("text", "size"),
    [("10485760", 10485760), ("256M", 256 * MIB), ("4K", 4096), ("1G", 1 << 30), ("", 0)],
)
def test_parse_size_follows_criu(text: str, size: int) -> None:
    assert parse_size(text) == size


def test_create_never_replaces_a_file_that_appeared_meanwhile(tmp_path: Path) -> None:
    # The create step links a finished temp file into place, which fails on an existing name
    # instead of replacing it: an administrator's file written after our check survives.
    from forensic_checkpoint.agent.readiness.criu_config import _create_exclusive

    path = tmp_path / RUNC_CONF
    path.parent.mkdir(parents=True)
    path.write_text(FOREIGN)
    with pytest.raises(FileExistsError):
        _create_exclusive(path, render(ON))
    assert path.read_text() == FOREIGN
    assert [p.name for p in path.parent.iterdir()] == ["runc.conf"]


def test_settings_from_chart_values() -> None:
    settings = CriuConfigSettings.from_values(
        {"enabled": True, "ghostLimitBytes": 64 * MIB, "skipInFlight": False}
    )
    assert settings == CriuConfigSettings(
        enabled=True, ghost_limit_bytes=64 * MIB, skip_in_flight=False
    )
    assert CriuConfigSettings.from_values(None) == CriuConfigSettings()


@pytest.mark.parametrize(
    "values",
    [{"enabled": "yes"}, {"ghostLimitBytes": "256M"}, {"ghostLimit": 1}, {"enabled": 1}],
)
def test_bad_chart_values_are_named(values: dict[str, object]) -> None:
    with pytest.raises(ConfigError, match="criuConfig"):
        CriuConfigSettings.from_values(values)


def test_result_feeds_the_readiness_check(tmp_path: Path) -> None:
    from forensic_checkpoint.domain.readiness import CheckName, NodeProbe, evaluate

    observed = reconcile_criu_config(ON, root=tmp_path).observation()
    check = next(
        c
        for c in evaluate(NodeProbe(criu_config=observed)).checks
        if c.name is CheckName.CRIU_CONFIG
    )
    assert (check.status.value, check.reason) == ("Pass", "Configured")
    absent = reconcile_criu_config(OFF, root=tmp_path).observation()
    assert absent.state == "Absent"
    check = next(
        c for c in evaluate(NodeProbe(criu_config=absent)).checks if c.name is CheckName.CRIU_CONFIG
    )
    assert check.reason == "EstablishedTCPNeedsConfig"


@pytest.mark.parametrize("key", ["action-script", "actionScript", "exec-cmd", "lib"])
def test_code_running_options_are_refused_by_name(key: str) -> None:
    with pytest.raises(ConfigError, match=f"refusing CRIU option.*{key}"):
        CriuConfigSettings.from_values({"enabled": True, key: "/tmp/x.sh"})


def test_render_refuses_options_outside_the_allow_list(monkeypatch: pytest.MonkeyPatch) -> None:
    """Defence in depth: even a future setting cannot make the writer emit `action-script`."""
    monkeypatch.setattr(
        CriuConfigSettings, "option_lines", lambda self: ["tcp-established", "action-script /x"]
    )
    with pytest.raises(ConfigError, match="action-script"):
        render(ON)


def test_allowed_options_still_render() -> None:
    options = parse_options(render(ON))
    assert set(options) <= ALLOWED_OPTIONS
    assert "tcp-established" in options


def test_foreign_action_script_is_flagged(tmp_path: Path) -> None:
    path = tmp_path / "etc/criu/runc.conf"
    path.parent.mkdir(parents=True)
    path.write_text("tcp-established\naction-script /usr/local/bin/x\n")
    result = reconcile_criu_config(CriuConfigSettings(), root=tmp_path)
    assert result.state is ConfigState.FOREIGN
    assert any("action-script" in n and "run code as root" in n for n in result.notes)
