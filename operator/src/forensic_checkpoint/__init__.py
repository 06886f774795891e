"""forensic-checkpoint: capture and analyse forensic container checkpoints on Kubernetes."""

__version__ = "0.1.0"
