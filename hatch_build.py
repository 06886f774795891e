"""The wheel's build hook: generates the CRIU image modules (tools/criu_protos.py) into the
package before hatchling collects its files, so every wheel (and an editable install) carries
``forensic_checkpoint/analysis/format/criu_proto/*_pb2.py`` built from the vendored protos."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class CriuProtoBuildHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        path = Path(self.root) / "tools" / "criu_protos.py"
        spec = importlib.util.spec_from_file_location("criu_protos", path)
        if spec is None or spec.loader is None:
            raise RuntimeError(f"cannot load {path}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        written = module.generate()
        self.app.display_info(f"criu_protos: generated {len(written)} files")
