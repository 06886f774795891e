"""Generate the CustomResourceDefinitions from the pydantic models.

The models are the one source; ``crds/*.yaml`` are generated and a test fails when they drift::

    python -m forensic_checkpoint.api.crds --write crds/
    python -m forensic_checkpoint.api.crds --check crds/

The API server wants a *structural* schema: every node typed, no ``$ref``, no ``anyOf`` with
types, no ``additionalProperties`` next to ``properties``. Pydantic's JSON schema is turned into
that by inlining definitions and unwrapping ``Optional``. ``x-kubernetes-*`` keys come from
``json_schema_extra`` on the fields.

Engineers add their root models (a :class:`~forensic_checkpoint.api.base.RootModel` with a
``crd`` declaration) to :data:`REGISTRY`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Any

import yaml

from forensic_checkpoint.api.base import CrdInfo, RootModel

#: "module:Class" of every root model; resolved lazily so a model still being written by another
#: engineer does not break the generator for the others.
REGISTRY: list[str] = [
    "forensic_checkpoint.api.forensiccheckpoint:ForensicCheckpoint",
    "forensic_checkpoint.api.forensicnode:ForensicNode",
    "forensic_checkpoint.api.policy:ForensicCapturePolicy",
]

#: JSON-schema keys the API server's JSONSchemaProps accepts (besides ``x-kubernetes-*``);
#: anything else pydantic emits (``title``, ``propertyNames``, ``examples``, ...) is dropped.
_ALLOWED_KEYS = {
    "type", "format", "description", "default", "maximum", "exclusiveMaximum", "minimum",
    "exclusiveMinimum", "maxLength", "minLength", "pattern", "maxItems", "minItems",
    "multipleOf", "enum", "maxProperties", "minProperties", "required", "items", "properties",
    "additionalProperties", "nullable", "example",
}  # fmt: skip
_VERBATIM_KEYS = {"enum", "default", "example", "required"}
_EXCLUSIVE_BOUNDS = {"exclusiveMaximum": "maximum", "exclusiveMinimum": "minimum"}


#: The descriptions Kubernetes' own types give these (``kubectl explain`` shows them).
_API_VERSION = (
    "APIVersion defines the versioned schema of this representation of an object. Servers "
    "should convert recognized schemas to the latest internal value, and may reject "
    "unrecognized values."
)
_KIND = (
    "Kind is a string value representing the REST resource this object represents. Servers may "
    "infer this from the endpoint the client submits requests to. In CamelCase."
)


def root_models() -> list[type[RootModel]]:
    """The registered root models whose modules exist in this checkout."""
    models: list[type[RootModel]] = []
    for entry in REGISTRY:
        module_name, _, class_name = entry.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue
            raise
        model = getattr(module, class_name, None)
        if isinstance(model, type) and issubclass(model, RootModel):
            models.append(model)
    return models


def _unwrap_optional(node: dict[str, Any]) -> dict[str, Any]:
    """``Optional[X]`` is ``anyOf [X, null]`` in JSON schema; structural schemas want just X
    (absent means unset, and the API server prunes nulls of non-nullable fields anyway)."""
    any_of = node.get("anyOf")
    if not isinstance(any_of, list):
        return node
    non_null = [branch for branch in any_of if branch.get("type") != "null"]
    if len(non_null) != 1:
        return node
    rest = {k: v for k, v in node.items() if k != "anyOf"}
    return {**non_null[0], **rest}


def _clean_key(key: str, value: Any) -> bool:
    """Whether a JSON-schema key survives into the CRD."""
    if key not in _ALLOWED_KEYS and not key.startswith("x-kubernetes-") and key != "const":
        return False
    if key == "default" and value is None:
        return False
    return not (key == "additionalProperties" and value is False)


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_resolve(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return _resolve(_dereference(node, defs), defs)
    unwrapped = _unwrap_optional(node)
    if unwrapped is not node:
        return _resolve(unwrapped, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if _clean_key(key, value):
            out.update(_translate(key, value, defs))
    if ("enum" in out or out.get("format") == "date-time") and "type" not in out:
        out["type"] = "string"
    return out


def _dereference(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """``node`` with its ``$ref`` replaced by the definition, ``node``'s own keys winning."""
    target = defs[node["$ref"].rsplit("/", 1)[-1]]
    # A class docstring is written for Python readers; only field descriptions go to kubectl.
    target = {k: v for k, v in target.items() if k != "description"}
    return {**target, **{k: v for k, v in node.items() if k != "$ref"}}


def _translate(key: str, value: Any, defs: dict[str, Any]) -> dict[str, Any]:
    """One JSON-schema key as the OpenAPI v3.0 keys it becomes in a structural CRD schema."""
    if key == "const":
        return {"enum": [value]}
    if key == "description":
        # A docstring's line breaks would show in kubectl explain, which wraps by itself.
        return {key: " ".join(str(value).split())}
    if key in _EXCLUSIVE_BOUNDS:
        # JSON Schema 2020-12 has numeric exclusive bounds; OpenAPI v3.0 has booleans.
        return {_EXCLUSIVE_BOUNDS[key]: value, key: True}
    if key == "properties":
        return {key: {name: _resolve(sub, defs) for name, sub in value.items()}}
    if key in _VERBATIM_KEYS or key.startswith("x-kubernetes-"):
        return {key: value}  # data, not schema: CEL rules, enum values, defaults
    return {key: _resolve(value, defs)}


def _model_schema(model: type[RootModel], field: str) -> dict[str, Any] | None:
    if field not in model.model_fields:
        return None
    full = model.model_json_schema(by_alias=True, mode="validation")
    prop = full["properties"][field]
    return dict(_resolve(prop, full.get("$defs", {})))


def openapi_schema(model: type[RootModel]) -> dict[str, Any]:
    """The structural ``openAPIV3Schema`` of one root model."""
    properties: dict[str, Any] = {
        "apiVersion": {"type": "string", "description": _API_VERSION},
        "kind": {"type": "string", "description": _KIND},
        # The API server allows nothing else here; it documents ObjectMeta itself.
        "metadata": {"type": "object"},
    }
    required: list[str] = []
    for field in ("spec", "status"):
        schema = _model_schema(model, field)
        if schema is None:
            continue
        properties[field] = schema
        if model.model_fields[field].is_required():
            required.append(field)
    out: dict[str, Any] = {"type": "object", "properties": properties}
    if model.__doc__:
        out["description"] = " ".join(model.__doc__.split())
    if required:
        out["required"] = required
    if model.crd.validations:
        out["x-kubernetes-validations"] = [dict(rule) for rule in model.crd.validations]
    return out


def crd_manifest(model: type[RootModel]) -> dict[str, Any]:
    info: CrdInfo = model.crd
    version: dict[str, Any] = {
        "name": info.version,
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": openapi_schema(model)},
    }
    if info.status_subresource and "status" in model.model_fields:
        version["subresources"] = {"status": {}}
    if info.printer_columns:
        columns = []
        for column in info.printer_columns:
            entry: dict[str, Any] = {
                "name": column.name,
                "type": column.type,
                "jsonPath": column.json_path,
            }
            if column.priority:
                entry["priority"] = column.priority
            if column.description:
                entry["description"] = column.description
            columns.append(entry)
        version["additionalPrinterColumns"] = columns
    names: dict[str, Any] = {
        "kind": info.kind,
        "listKind": f"{info.kind}List",
        "plural": info.plural,
        "singular": info.singular,
    }
    if info.short_names:
        names["shortNames"] = list(info.short_names)
    if info.categories:
        names["categories"] = list(info.categories)
    metadata: dict[str, Any] = {"name": info.name}
    labels = {"app.kubernetes.io/part-of": "forensic-checkpoint", **info.extra_labels}
    metadata["labels"] = labels
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": metadata,
        "spec": {
            "group": info.group,
            "names": names,
            "scope": info.scope,
            "versions": [version],
        },
    }


def render(model: type[RootModel]) -> str:
    header = "# Generated by `python -m forensic_checkpoint.api.crds --write crds/`; do not edit.\n"
    return header + yaml.safe_dump(crd_manifest(model), sort_keys=False, width=100)


def file_name(model: type[RootModel]) -> str:
    return f"{model.crd.name}.yaml"


def rendered_files() -> dict[str, str]:
    return {file_name(model): render(model) for model in root_models()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", type=Path, metavar="DIR", help="write the CRD files")
    action.add_argument("--check", type=Path, metavar="DIR", help="fail if DIR is stale")
    args = parser.parse_args(argv)
    files = rendered_files()
    if args.write is not None:
        args.write.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (args.write / name).write_text(text, encoding="utf-8")
        return 0
    stale = [
        name
        for name, text in files.items()
        if not (args.check / name).is_file()
        or (args.check / name).read_text(encoding="utf-8") != text
    ]
    for name in stale:
        print(f"stale or missing: {args.check / name}", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
