"""The ForensicNode CRD columns against the readiness checks they display."""

from __future__ import annotations


def test_forensicnode_columns_name_real_checks() -> None:
    """The CRD's printer columns select checks by name; a renamed check would leave a column
    silently empty."""
    from forensic_checkpoint.api.forensicnode import CHECK_COLUMNS
    from forensic_checkpoint.domain.readiness import CheckName

    assert {check for _, check in CHECK_COLUMNS} <= {c.value for c in CheckName}
