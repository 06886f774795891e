"""The agent's export worker in a process of its own, over a real state directory, so a test
can SIGKILL it mid-upload. ``python agent_export_child.py SETTINGS.json``; prints ``part N``
after each part the store acknowledged, then pauses ``partDelay`` seconds."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from forensic_checkpoint.agent.evidence.export import Exporter
from forensic_checkpoint.agent.evidence.export_config import ExportConfig
from forensic_checkpoint.agent.evidence.export_worker import ExportWorker
from forensic_checkpoint.agent.jobs import JobStore
from forensic_checkpoint.agent.metrics import AgentMetrics


def main(settings_path: str) -> int:
    settings = json.loads(Path(settings_path).read_text())
    state = Path(settings["stateDir"])
    config = ExportConfig(
        bucket=settings["bucket"],
        state_dir=state / "exports",
        endpoint_url=settings["endpoint"],
        access_key_id=settings["accessKey"],
        secret_access_key=settings["secretKey"],
        cluster="test",
        part_size=5 * 1024 * 1024,
        node_name="node-a",
        during_analysis=settings.get("duringAnalysis", False),
    )

    def slow(cfg: ExportConfig) -> Exporter:
        exporter = Exporter(cfg)
        upload = exporter.client.upload_part

        def upload_part(**kwargs: Any) -> Any:
            answer = upload(**kwargs)
            print(f"part {kwargs['PartNumber']}", flush=True)
            time.sleep(settings["partDelay"])
            return answer

        exporter.client.upload_part = upload_part
        return exporter

    worker = ExportWorker(
        store=JobStore(state),
        config=config,
        node_name="node-a",
        checkpoint_dir=Path(settings["checkpointDir"]),
        metrics=AgentMetrics(),
        exporter_factory=slow,
    )
    worker.run_due()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
