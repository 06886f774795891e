"""Findings tests import their helpers by name (findings_crafted.py, findings_samples.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
