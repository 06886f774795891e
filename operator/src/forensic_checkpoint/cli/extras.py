"""The optional extras, for a clear message when a command runs without the one it needs.

The base package is the offline analyzer; the cluster side (operator, agent, kubectl plugin,
``verify --ref``) needs the ``operator`` extra and the agent's S3 export the ``export`` extra
(pyproject.toml). A command that imports a module of a missing extra gets this message, not a
traceback.
"""

from __future__ import annotations

#: top-level module -> the extra that installs it
EXTRA_OF_MODULE = {
    "kopf": "operator",
    "kubernetes": "operator",
    "aiohttp": "operator",
    "requests": "operator",
    "urllib3": "operator",
    "prometheus_client": "operator",
    "cryptography": "operator",
    "boto3": "export",
    "botocore": "export",
}


def missing_extra(exc: ModuleNotFoundError) -> str | None:
    """The one-line remedy when ``exc`` is a module of an extra that is not installed."""
    module = (exc.name or "").split(".")[0]
    extra = EXTRA_OF_MODULE.get(module)
    if extra is None:
        return None
    return (
        f"this command needs the '{extra}' extra ({module} is not installed): install the "
        f"wheel with it, pip install 'forensic_checkpoint-<version>-py3-none-any.whl[{extra}]', "
        f"or pip install '.[{extra}]' in a clone of the repository (docs/install.md)"
    )
