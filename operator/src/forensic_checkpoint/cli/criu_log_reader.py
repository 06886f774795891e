"""`forensic-checkpoint criu-log-reader`: the agent pod's second container, which alone mounts
the runtime's directories and answers the agent's requests for CRIU logs over a Unix socket
(``agent.kubelet.criu_log_reader``; docs/security-model.md)."""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

from forensic_checkpoint import logs

HELP = "Serve CRIU logs of failed checkpoints (and nothing else) to the agent over a socket."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--socket", type=Path, required=True, help="the Unix socket to serve on")
    parser.add_argument(
        "--dir",
        type=Path,
        action="append",
        required=True,
        help="a runtime directory holding <id>/criu-dump.log (containerd) or "
        "<id>/userdata/dump.log (CRI-O); repeat for each",
    )
    logs.add_arguments(parser)  # --log-level, --log-format


def run(args: argparse.Namespace) -> int:
    from forensic_checkpoint.agent.kubelet.criu_log_reader import CriuLogReader
    from forensic_checkpoint.agent.kubelet.criu_logs import LocalCriuLogs

    logs.configure(args.log_format, level=args.log_level)
    reader = CriuLogReader(args.socket, LocalCriuLogs(tuple(args.dir)))
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server = threading.Thread(target=reader.serve_forever, name="criu-log-reader", daemon=True)
    server.start()
    stop.wait()
    reader.close()
    server.join(timeout=5)
    return 0
