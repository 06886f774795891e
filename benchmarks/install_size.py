"""Install size of the package and of each extra, in clean venvs (issue 18).

Builds the sdist and wheel from the checkout (``python -m build``), then installs the wheel
into a fresh venv three times: the base package (the analyzer and its CLI), base + ``operator``
(the cluster side) and base + ``export`` (S3). Prints the size of each site-packages without
pip and setuptools, and how many distributions it holds. Dependencies come from the package
index through pip's cache.

    python -m benchmarks.install_size [--keep DIR]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from forensic_checkpoint_dev.packaging import build_dists, clean_install, installed_size

VARIANTS = (("base", ""), ("base+operator", "operator"), ("base+export", "export"))


def measure(work: Path) -> list[tuple[str, int, int]]:
    dists = build_dists(work / "dist", work / "build-tools")
    rows = []
    for label, extras in VARIANTS:
        python = clean_install(work / label, dists.wheel, extras)
        size, count = installed_size(python)
        rows.append((label, size, count))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="build and install here and keep it")
    args = parser.parse_args()
    if args.keep:
        rows = measure(args.keep)
    else:
        with tempfile.TemporaryDirectory(prefix="fc-install-size-") as tmp:
            rows = measure(Path(tmp))
    print(f"{'install':<16} {'site-packages':>14} {'distributions':>14}")
    for label, size, count in rows:
        print(f"{label:<16} {size / 2**20:>10.1f} MiB {count:>14}")


if __name__ == "__main__":
    main()
