"""Run one export in its own process, as the agent would, so a test can kill it mid-upload.

``python upload_child.py CONFIG.json`` with ``endpoint``, ``bucket``, ``stateDir``, ``archive``,
``sha256``, ``recipients`` and ``partDelay``: the seconds to pause after each part (so the test
can catch the process half way; the exporter and the server are the real ones). Prints the
outcome as JSON on success, with the peak of Python allocations during the export.
"""

from __future__ import annotations

import json
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

from forensic_checkpoint.agent.evidence.export import Exporter
from forensic_checkpoint.agent.evidence.export_config import ExportConfig
from forensic_checkpoint.agent.evidence.s3 import make_client
from forensic_checkpoint.api.custody import EvidenceTarget


def main(config_path: str) -> int:
    settings = json.loads(Path(config_path).read_text())
    config = ExportConfig(
        bucket=settings["bucket"],
        state_dir=Path(settings["stateDir"]),
        endpoint_url=settings["endpoint"],
        access_key_id=settings["accessKey"],
        secret_access_key=settings["secretKey"],
        recipients=tuple(settings.get("recipients", ())),
        part_size=5 * 1024 * 1024,
        node_name="node-a",
    )
    client = make_client(config)
    real_upload_part = client.upload_part

    def slow_upload_part(**kwargs: Any) -> Any:
        answer = real_upload_part(**kwargs)
        print(f"part {kwargs['PartNumber']}", flush=True)
        time.sleep(settings["partDelay"])
        return answer

    client.upload_part = slow_upload_part
    exporter = Exporter(config, client)
    tracemalloc.start()
    outcome = exporter.export(
        Path(settings["archive"]),
        settings["sha256"],
        EvidenceTarget.model_validate(settings["target"]),
    )
    print(
        json.dumps(
            {
                "url": outcome.record.url,
                "sha256": outcome.record.sha256,
                "uploaded": outcome.parts_uploaded,
                "skipped": outcome.parts_skipped,
                "peakBytes": tracemalloc.get_traced_memory()[1],
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
