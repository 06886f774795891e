"""JSON schemas for ``kubeconform``, made offline: Kubernetes' from an API server's OpenAPI v2
document (``/openapi/v2``, e.g. the dev cluster's), ours from the CRDs in ``crds/``.

kubeconform reads one standalone schema per kind from a directory; with
``-schema-location '<dir>/{{ .ResourceKind }}{{ .KindSuffix }}.json'`` the files are named like
the yannh/kubernetes-json-schema ones: ``deployment-apps-v1.json``, ``service-v1.json``,
``forensicnode-forensic-checkpoint-v1alpha1.json`` (kind, first label of the group, version;
lower case). Each file keeps the OpenAPI definitions it reaches under ``definitions``, so the
``#/definitions/...`` references resolve inside it (and recursive types such as a CRD's
JSONSchemaProps stay finite). Every object with declared properties gets
``additionalProperties: false``: that is what makes ``kubeconform -strict`` refuse unknown
fields.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

#: kubeconform's ``-schema-location`` for a directory this module wrote.
LOCATION = "{{ .ResourceKind }}{{ .KindSuffix }}.json"

_REF = "#/definitions/"
#: Types the API server takes as a string or a number (OpenAPI v2 says only ``string``).
_STRING_OR_NUMBER = {
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {
        "oneOf": [{"type": "string"}, {"type": "integer"}]
    },
    "io.k8s.apimachinery.pkg.api.resource.Quantity": {
        "oneOf": [{"type": "string"}, {"type": "number"}]
    },
}


def file_name(kind: str, api_version: str) -> str:
    """The file kubeconform looks for (its ``schemaPath``: kind + ``KindSuffix``)."""
    group, _, version = api_version.rpartition("/")
    suffix = f"-{group.split('.')[0]}-{version}" if group else f"-{version}"
    return f"{kind}{suffix}.json".lower()


def _strict(schema: Any) -> Any:
    """``schema`` with ``additionalProperties: false`` on every object that lists properties
    (unless it keeps unknown fields on purpose)."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _strict(v) for k, v in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def _refs(schema: Any) -> Iterable[str]:
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith(_REF):
            yield ref[len(_REF) :]
        for value in schema.values():
            yield from _refs(value)
    elif isinstance(schema, list):
        for value in schema:
            yield from _refs(value)


def _reachable(name: str, definitions: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    todo = [name]
    while todo:
        current = todo.pop()
        if current in found:
            continue
        found[current] = _STRING_OR_NUMBER.get(current) or _strict(definitions[current])
        todo.extend(r for r in _refs(definitions[current]) if r not in found)
    return found


def from_openapi_v2(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """file name -> standalone strict schema, for every kind the document declares."""
    definitions: dict[str, Any] = document["definitions"]
    schemas: dict[str, dict[str, Any]] = {}
    for name, definition in definitions.items():
        for gvk in definition.get("x-kubernetes-group-version-kind", []):
            api_version = f"{gvk['group']}/{gvk['version']}" if gvk["group"] else gvk["version"]
            file = file_name(gvk["kind"], api_version)
            if file in schemas:  # e.g. a group whose first label another group shares
                continue
            reached = _reachable(name, definitions)
            schema = {"$schema": "http://json-schema.org/draft-04/schema#", **reached[name]}
            schema["definitions"] = reached
            schemas[file] = schema
    return schemas


def from_crds(crds: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """file name -> strict schema, for every version of every CRD."""
    schemas: dict[str, dict[str, Any]] = {}
    for crd in crds:
        spec = crd["spec"]
        for version in spec["versions"]:
            schema = dict(_strict(version["schema"]["openAPIV3Schema"]))
            properties = schema.setdefault("properties", {})
            properties.setdefault("apiVersion", {"type": "string"})
            properties.setdefault("kind", {"type": "string"})
            properties["metadata"] = {"type": "object"}
            schemas[file_name(spec["names"]["kind"], f"{spec['group']}/{version['name']}")] = {
                "$schema": "http://json-schema.org/draft-04/schema#",
                **schema,
            }
    return schemas


def write(directory: Path, openapi_v2: dict[str, Any], crd_files: Iterable[Path]) -> int:
    """Write Kubernetes' and the CRDs' schemas into ``directory``; how many files."""
    crds = [d for f in crd_files for d in yaml.safe_load_all(f.read_text()) if d]
    schemas = {**from_openapi_v2(openapi_v2), **from_crds(crds)}
    directory.mkdir(parents=True, exist_ok=True)
    for name, schema in schemas.items():
        (directory / name).write_text(json.dumps(schema))
    return len(schemas)
