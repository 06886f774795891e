"""Alert-driven capture: the Alertmanager / Falcosidekick webhook receiver (docs/alerts.md)."""

from forensic_checkpoint.controller.alerts.backend import CaptureBackend, KubeCaptureBackend
from forensic_checkpoint.controller.alerts.config import AlertReceiverConfig
from forensic_checkpoint.controller.alerts.server import AlertServer, serve_alerts

__all__ = [
    "AlertReceiverConfig",
    "AlertServer",
    "CaptureBackend",
    "KubeCaptureBackend",
    "serve_alerts",
]
