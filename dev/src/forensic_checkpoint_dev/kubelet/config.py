"""What a fake kubelet is started with: its configuration file, and the default archive it
returns (decompressed once per node from the bundled sample)."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zstandard

from forensic_checkpoint_dev.kubelet.faults import DEFAULT_RUNTIME_REQUEST_TIMEOUT


@dataclass(frozen=True)
class KubeletConfig:
    node_name: str
    kubeconfig: Path  #: the node's own identity towards the API server
    serving_cert: Path
    serving_key: Path
    #: The kubelet's client CA bundle (clientCAFile): the cluster CA, and forensic-checkpoint's
    #: kubelet client CA (the dev cluster adds it, as docs/install.md tells an installation to).
    client_ca: Path
    checkpoint_dir: Path
    state_dir: Path  #: ready file, decompressed default archive
    default_archive: Path
    #: What the real node here reports (kubelet v1.36.3 on containerd 2.3.4, real-node.md).
    runtime_version: str = "containerd://2.3.4"
    #: The kubelet configuration's runtimeRequestTimeout, in seconds.
    runtime_request_timeout: float = DEFAULT_RUNTIME_REQUEST_TIMEOUT
    #: Where it listens and the InternalIP it registers. A real kubelet refuses a loopback node
    #: IP, and the API server's node proxy refuses to dial one, so the dev cluster passes the
    #: machine's address; loopback only where the machine has none.
    address: str = "127.0.0.1"

    @classmethod
    def load(cls, path: Path) -> KubeletConfig:
        raw = json.loads(path.read_text())
        return cls(
            node_name=raw["nodeName"],
            kubeconfig=Path(raw["kubeconfig"]),
            serving_cert=Path(raw["servingCert"]),
            serving_key=Path(raw["servingKey"]),
            client_ca=Path(raw["clientCA"]),
            checkpoint_dir=Path(raw["checkpointDir"]),
            state_dir=Path(raw["stateDir"]),
            default_archive=Path(raw["defaultArchive"]),
            runtime_version=raw.get("runtimeVersion", cls.runtime_version),
            runtime_request_timeout=float(
                raw.get("runtimeRequestTimeout", cls.runtime_request_timeout)
            ),
            address=raw.get("address", cls.address),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "nodeName": self.node_name,
            "kubeconfig": str(self.kubeconfig),
            "servingCert": str(self.serving_cert),
            "servingKey": str(self.serving_key),
            "clientCA": str(self.client_ca),
            "checkpointDir": str(self.checkpoint_dir),
            "stateDir": str(self.state_dir),
            "defaultArchive": str(self.default_archive),
            "runtimeVersion": self.runtime_version,
            "runtimeRequestTimeout": self.runtime_request_timeout,
            "address": self.address,
        }


def copy_archive(source: Path, out: Any) -> None:
    with source.open("rb") as src:
        if source.suffix == ".zst":
            zstandard.ZstdDecompressor().copy_stream(src, out)
        else:
            shutil.copyfileobj(src, out, 1 << 20)


def prepare_default_archive(compressed: Path, target: Path) -> Path:
    """The kubelet writes plain tar: decompress the bundled sample once per node."""
    if not target.exists():
        tmp = target.with_suffix(".part")
        with tmp.open("wb") as out:
            copy_archive(compressed, out)
        tmp.replace(target)
    return target
