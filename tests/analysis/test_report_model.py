"""The report's dataclasses keep the camelCase JSON contract and parse back through pydantic."""

from __future__ import annotations

import dataclasses
import json

import pytest
from pydantic.alias_generators import to_camel as pydantic_to_camel
from tests.analysis.sample_data import SAMPLES, revealed

from forensic_checkpoint.analysis.model import diff, listing, process, report
from forensic_checkpoint.analysis.model import findings as model
from forensic_checkpoint.analysis.model.base import ReportModel, to_camel
from forensic_checkpoint.analysis.model.findings import Evidence, Finding
from forensic_checkpoint.analysis.model.report import (
    MemorySearch,
    Report,
    SearchMatch,
    parse_report,
)

RECORDS = sorted(
    {
        cls
        for module in (report, process, model, diff, listing)
        for cls in vars(module).values()
        if isinstance(cls, type) and issubclass(cls, ReportModel) and cls is not ReportModel
    },
    key=lambda cls: cls.__name__,
)


def test_every_record_is_a_keyword_only_dataclass() -> None:
    assert len(RECORDS) > 40
    for cls in RECORDS:
        assert dataclasses.is_dataclass(cls), cls
        assert all(f.kw_only for f in dataclasses.fields(cls)), cls


@pytest.mark.parametrize("cls", RECORDS, ids=lambda cls: cls.__name__)
def test_json_keys_are_the_ones_pydantic_wrote(cls: type) -> None:
    """The contract's keys predate these dataclasses: pydantic's to_camel named them."""
    for f in dataclasses.fields(cls):
        assert to_camel(f.name) == pydantic_to_camel(f.name), (cls.__name__, f.name)


def test_nested_records_lists_and_dicts_become_json() -> None:
    finding = Finding(
        id="r:1",
        rule="r",
        severity="high",
        title="t",
        source="s",
        evidence=Evidence(pid=3, details={"some_key": "v"}),
    )
    data = finding.to_json_dict()
    assert data["evidence"]["details"] == {"some_key": "v"}  # dict keys are data, not fields
    assert data["evidence"]["pid"] == 3 and data["evidence"]["sha256"] is None
    assert "sha256" not in finding.to_json_dict(exclude_none=True)["evidence"]
    search = MemorySearch(pattern="x", kind="literal", matches=[SearchMatch(pid=1, address="0x1")])
    assert search.to_json_dict()["totalMatches"] == 0
    assert search.to_json_dict()["matches"] == [
        {"pid": 1, "address": "0x1", "mapping": None, "context": "", "match": "", "sharedWith": []}
    ]
    assert json.loads(finding.to_json()) == data


@pytest.mark.parametrize("name", SAMPLES)
def test_reports_survive_json_and_pydantic_validation(name: str) -> None:
    """What the operator does with an agent's report: JSON text in, the same Report out."""
    original = revealed(name)
    text = original.to_json()
    parsed = parse_report(text)
    assert isinstance(parsed, Report)
    assert parsed == original
    assert parsed.to_json() == text


def test_parse_report_rejects_what_is_not_a_report() -> None:
    good = json.loads(revealed(SAMPLES[0]).to_json())
    for broken in (
        {},  # archive is required
        {**good, "processes": [{"pid": "one"}]},
        {**good, "findings": [{**good["findings"][0], "severity": "dire"}]}
        if good["findings"]
        else {**good, "archive": None},
    ):
        with pytest.raises(ValueError):
            parse_report(json.dumps(broken))
    with pytest.raises(ValueError):
        parse_report("not json")
