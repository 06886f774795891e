"""Where the repository checkout is: the harness reads crds/, deploy/, tools/, e2e/ and the
recorded samples in tests/data from it.

``$FORENSIC_CHECKPOINT_REPO`` wins; otherwise the nearest directory above this package (an
editable install runs from the checkout), then above the working directory, that holds both
``pyproject.toml`` and ``crds/``.
"""

from __future__ import annotations

import os
from pathlib import Path

from forensic_checkpoint.errors import ConfigError

ENV_VAR = "FORENSIC_CHECKPOINT_REPO"


def _is_root(path: Path) -> bool:
    return (path / "pyproject.toml").is_file() and (path / "crds").is_dir()


def find_repo_root(start: Path | None = None) -> Path:
    """The checkout's root directory; ``ConfigError`` when none is found."""
    if override := os.environ.get(ENV_VAR):
        return Path(override).resolve()
    starts = [start] if start is not None else [Path(__file__).resolve().parent, Path.cwd()]
    for origin in starts:
        for candidate in (origin, *origin.parents):
            if _is_root(candidate):
                return candidate
    raise ConfigError(
        f"cannot find the forensic-checkpoint checkout (pyproject.toml and crds/); set {ENV_VAR}"
    )


#: The checkout this harness works on.
REPO_ROOT = find_repo_root()
