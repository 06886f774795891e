"""Which package a file written in the container belongs to, by the package database that the
same rootfs-diff carries: a package installed at run time (``apt-get install`` at start) writes
its files and its own record of them together, so those files are the package manager's work,
not a dropped binary. Only records written in this container count; the image's own are not in
the archive.

- dpkg: ``/var/lib/dpkg/info/<package>[:<arch>].list``, one installed path per line;
- apk: ``/lib/apk/db/installed``, ``P:<package>`` then ``F:<dir>`` and ``R:<file>`` lines.

rpm keeps a binary database and is not read: its files stay reported.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping

DPKG_INFO = "/var/lib/dpkg/info/"
APK_INSTALLED = "/lib/apk/db/installed"


def package_owners(files: Mapping[str, bytes]) -> dict[str, str]:
    """Absolute path -> the package whose record (written in the container) lists it."""
    owners: dict[str, str] = {}
    for path, data in files.items():
        if (
            path.startswith(DPKG_INFO)
            and path.endswith(".list")
            and "/" not in path[len(DPKG_INFO) :]
        ):
            package = path[len(DPKG_INFO) : -len(".list")].split(":", 1)[0]
            for line in data.decode("utf-8", "replace").splitlines():
                if line.startswith("/"):
                    owners.setdefault(posixpath.normpath(line), package)
        elif path == APK_INSTALLED:
            owners.update(_apk_owners(data.decode("utf-8", "replace")))
    return owners


def _apk_owners(text: str) -> dict[str, str]:
    owners: dict[str, str] = {}
    package, directory = "", ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key == "P":
            package, directory = value, ""
        elif key == "F":
            directory = value
        elif key == "R" and package:
            owners["/" + posixpath.join(directory, value).lstrip("/")] = package
    return owners
