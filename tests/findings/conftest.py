"""Findings tests import their helpers by name (crafted.py, samples.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
