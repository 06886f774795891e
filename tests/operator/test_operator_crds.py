"""The committed CRDs are what the models generate, and they are structural."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from forensic_checkpoint.api import crds
from forensic_checkpoint.api.forensiccheckpoint import ForensicCheckpoint

CRD_DIR = Path(__file__).resolve().parents[2] / "crds"


def test_committed_crds_match_the_models() -> None:
    files = crds.rendered_files()
    assert f"{ForensicCheckpoint.crd.name}.yaml" in files
    for name, text in files.items():
        committed = CRD_DIR / name
        assert committed.is_file(), (
            f"{name} missing: python -m forensic_checkpoint.api.crds --write crds/"
        )
        assert committed.read_text() == text, f"{name} is stale: regenerate with --write crds/"


def _walk(node: Any, path: str = "") -> list[str]:
    problems: list[str] = []
    if isinstance(node, dict):
        for bad in ("$ref", "anyOf", "allOf", "oneOf", "const", "title", "$defs", "propertyNames"):
            if bad in node:
                problems.append(f"{path}: {bad}")
        if "properties" in node and "type" not in node:
            problems.append(f"{path}: object without type")
        if "properties" in node and "additionalProperties" in node:
            problems.append(f"{path}: properties with additionalProperties")
        bounded = "enum" in node or "format" in node or "maxLength" in node
        if node.get("type") == "string" and not bounded:
            problems.append(f"{path}: unbounded string")
        if node.get("type") == "array" and "maxItems" not in node:
            problems.append(f"{path}: unbounded array")
        for key, value in node.items():
            if key in ("properties",):
                for name, sub in value.items():
                    problems.extend(_walk(sub, f"{path}.{name}"))
            elif isinstance(value, (dict, list)) and key != "x-kubernetes-validations":
                problems.extend(_walk(value, f"{path}/{key}"))
    elif isinstance(node, list):
        for i, item in enumerate(node):
            problems.extend(_walk(item, f"{path}[{i}]"))
    return problems


def test_every_registered_schema_is_structural_and_bounded() -> None:
    models = crds.root_models()
    assert ForensicCheckpoint in models
    for model in models:
        schema = crds.crd_manifest(model)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        parts = {k: v for k, v in schema["properties"].items() if k in ("spec", "status")}
        assert _walk(parts) == [], model.__name__


def test_forensiccheckpoint_crd_shape() -> None:
    manifest = crds.crd_manifest(ForensicCheckpoint)
    version = manifest["spec"]["versions"][0]
    schema = version["schema"]["openAPIV3Schema"]
    assert schema["properties"]["spec"]["x-kubernetes-validations"] == [
        {"rule": "self == oldSelf", "message": "spec is immutable"}
    ]
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns[:6] == ["Pod", "Containers", "Node", "Phase", "Suspicious", "Size"]
    assert "Age" in columns
    assert manifest["spec"]["names"]["shortNames"] == ["fcp"]


def test_check_mode_reports_stale_files(tmp_path: Path) -> None:
    assert crds.main(["--check", str(tmp_path)]) == 1
    assert crds.main(["--write", str(tmp_path)]) == 0
    assert crds.main(["--check", str(tmp_path)]) == 0
    target = tmp_path / f"{ForensicCheckpoint.crd.name}.yaml"
    target.write_text(target.read_text().replace("fcp", "fc"))
    assert crds.main(["--check", str(tmp_path)]) == 1
    assert yaml.safe_load(crds.render(ForensicCheckpoint))["kind"] == "CustomResourceDefinition"


def _undescribed(node: dict[str, Any], path: str) -> list[str]:
    """The properties under ``node`` (through list items) that have no description; the root's
    ``metadata`` may carry none (the API server documents ObjectMeta itself)."""
    missing = []
    for name, sub in (node.get("properties") or {}).items():
        root_metadata = name == "metadata" and "." not in path
        if not sub.get("description") and not root_metadata:
            missing.append(f"{path}.{name}")
        elif "\n" in sub.get("description", ""):
            missing.append(f"{path}.{name} (a line break: kubectl explain wraps by itself)")
        missing.extend(_undescribed(sub, f"{path}.{name}"))
    if isinstance(node.get("items"), dict):
        missing.extend(_undescribed(node["items"], f"{path}[]"))
    return missing


def test_every_kind_and_every_field_has_a_description_for_kubectl_explain() -> None:
    for model in crds.root_models():
        schema = crds.openapi_schema(model)
        assert schema.get("description"), f"{model.__name__}: no description of the kind"
        assert _undescribed(schema, model.crd.kind) == []
