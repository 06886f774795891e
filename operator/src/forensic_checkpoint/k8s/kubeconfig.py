"""Which kubeconfig, context and namespace a command line means, by kubectl's rules.

- files: ``--kubeconfig FILE`` (that file only), else every existing file of ``$KUBECONFIG``
  (a colon-separated list; missing ones are skipped), else ``~/.kube/config``;
- context: ``--context``, else the first file that sets ``current-context``;
- a context, cluster or user named in several files: the first file's wins;
- namespace: ``-n/--namespace``, else the context's, else ``default``.

The client library merges a list too, but lets the LAST file's ``current-context`` win; the
context is therefore resolved here and handed to it by name.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from forensic_checkpoint.errors import ConfigError


@dataclass(frozen=True)
class KubeTarget:
    files: tuple[Path, ...]
    context: str | None  #: None: the files name no current context (the library's error)
    namespace: str


def kubeconfig_files(kubeconfig: str | os.PathLike[str] | None) -> tuple[Path, ...]:
    if kubeconfig:
        return (Path(kubeconfig).expanduser(),)
    env = os.environ.get("KUBECONFIG", "")
    listed = [Path(p).expanduser() for p in env.split(os.pathsep) if p]
    if listed:
        return tuple(p for p in listed if p.exists()) or (listed[0],)
    return (Path.home() / ".kube" / "config",)


def resolve(
    kubeconfig: str | os.PathLike[str] | None = None,
    context: str | None = None,
    namespace: str | None = None,
) -> KubeTarget:
    """The files, context and namespace of these flags (each None when not given)."""
    files = kubeconfig_files(kubeconfig)
    current: str | None = context
    contexts: dict[str, dict[str, Any]] = {}
    for path in files:
        config = _read(path)
        current = current or config.get("current-context") or None
        for entry in config.get("contexts") or []:
            if isinstance(entry, dict) and entry.get("name") not in contexts:
                contexts[str(entry.get("name"))] = entry.get("context") or {}
    if context and context not in contexts:
        raise ConfigError(f'context "{context}" does not exist in {_names(files)}')
    ns = namespace or str(contexts.get(current or "", {}).get("namespace") or "default")
    return KubeTarget(files, current, ns)


def _read(path: Path) -> dict[str, Any]:
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot load kubeconfig {path}: not a kubeconfig file") from exc
    return config if isinstance(config, dict) else {}


def _names(files: tuple[Path, ...]) -> str:
    return os.pathsep.join(str(p) for p in files)
