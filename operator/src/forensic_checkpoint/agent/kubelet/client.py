"""The kubelet's checkpoint API, called over mutual TLS with ``requests``.

``POST https://<InternalIP>:<kubeletEndpoint.Port>/checkpoint/<ns>/<pod>/<container>?timeout=N``
answers 200 ``{"items": ["<host path of the .tar>"]}``; every other outcome becomes a
:class:`~forensic_checkpoint.errors.KubeletError` whose ``reason`` is the contract's.
"""

from __future__ import annotations

import json
import logging
import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import requests
import urllib3

from forensic_checkpoint.agent.kubelet import outcomes
from forensic_checkpoint.agent.kubelet.criu_logs import CriuLogSource
from forensic_checkpoint.errors import ConfigError, KubeletError, KubeletRuntimeError

log = logging.getLogger(__name__)

#: The kubelet's ``runtimeRequestTimeout`` default (2 min). The kubelet's CRI client
#: (k8s.io/cri-client ``CheckpointContainer``) never gives the runtime less than that: a smaller
#: ``?timeout=`` is raised to it, so the call may take this long whatever the request says.
DEFAULT_RUNTIME_REQUEST_TIMEOUT = 120.0


def kubelet_deadline(timeout_seconds: int | None, runtime_request_timeout: float) -> float:
    """Seconds the kubelet may take for one checkpoint: ``max(?timeout=, runtimeRequestTimeout)``
    (an absent timeout is the runtime request timeout itself)."""
    return max(float(timeout_seconds or 0), runtime_request_timeout)


@dataclass(frozen=True)
class KubeletAuth:
    """How the agent proves itself to the kubelet and verifies the kubelet."""

    client_cert: Path | None = None
    client_key: Path | None = None
    #: ``--kubelet-client-certificate=csr``: certificate and key in one file that the agent
    #: renews itself (``agent.identity.kubelet_client``); absent until the first is issued.
    client_pem: Path | None = None
    token_file: Path | None = None
    ca_file: Path | None = None
    insecure_skip_tls_verify: bool = False

    def validate(self) -> None:
        if (self.client_cert is None) != (self.client_key is None):
            raise ConfigError("--kubelet-client-cert and --kubelet-client-key go together")
        credentials = [self.client_cert, self.client_pem, self.token_file]
        if sum(c is not None for c in credentials) != 1:
            raise ConfigError(
                "give one of --kubelet-client-cert/--kubelet-client-key, "
                "--kubelet-client-certificate=csr or --kubelet-token-file"
            )
        if self.ca_file is None and not self.insecure_skip_tls_verify:
            raise ConfigError(
                "give --kubelet-ca (the kubelet serving CA) or, explicitly, "
                "--kubelet-insecure-skip-tls-verify"
            )
        for flag, path in (
            ("--kubelet-client-cert", self.client_cert),
            ("--kubelet-client-key", self.client_key),
            ("--kubelet-token-file", self.token_file),
            ("--kubelet-ca", self.ca_file),
        ):
            if path is not None and not path.is_file():
                raise ConfigError(f"{flag}: {path} is not a readable file")


class KubeletCallAbandoned(KubeletError):
    """The request reached the kubelet but no answer reached the agent: the agent stopped
    waiting, or the connection broke mid-call. The kubelet runs the dump on the request's
    context, so losing the caller cancels it, except when the runtime had already written the
    archive: then a file no job claims appears (see ``agent.orphans``)."""


class KubeletClient:
    """One node's kubelet. Thread-safe: each call uses its own ``requests`` session."""

    def __init__(
        self,
        node: str,
        host: str,
        port: int,
        auth: KubeletAuth,
        *,
        timeout_margin: float = 30.0,
        runtime_request_timeout: float = DEFAULT_RUNTIME_REQUEST_TIMEOUT,
        criu_logs: CriuLogSource | None = None,
    ) -> None:
        auth.validate()
        self.node = node
        self.base_url = f"https://{_host_for_url(host)}:{port}"
        self.auth = auth
        self.timeout_margin = timeout_margin
        #: The node kubelet's ``runtimeRequestTimeout`` (``--kubelet-runtime-request-timeout``).
        self.runtime_request_timeout = runtime_request_timeout
        #: Where CRIU's log of a failed dump is read (None: the reason stays RuntimeError).
        self.criu_logs = criu_logs
        if auth.insecure_skip_tls_verify:
            # Said once, loudly, here; not as a urllib3 warning on every call.
            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
            log.warning(
                "KUBELET TLS VERIFICATION IS DISABLED (--kubelet-insecure-skip-tls-verify): "
                "the agent cannot tell the kubelet on %s from an impostor",
                node,
            )

    def _session(self) -> requests.Session:
        session = requests.Session()
        session.trust_env = False  # no proxies between the agent and its own node's kubelet
        session.verify = False if self.auth.insecure_skip_tls_verify else str(self.auth.ca_file)
        if self.auth.client_cert is not None and self.auth.client_key is not None:
            session.cert = (str(self.auth.client_cert), str(self.auth.client_key))
        if self.auth.client_pem is not None:
            # A new session per call loads the file again: a renewed certificate (replaced
            # atomically, key included) is used from the next call on, without a restart.
            if not self.auth.client_pem.is_file():
                raise _error(
                    outcomes.tls_error(
                        self.node,
                        f"no kubelet client certificate yet ({self.auth.client_pem}): the "
                        "agent waits for the operator's signer forensic-checkpoint.dev/"
                        "kubelet-client",
                    )
                )
            session.cert = str(self.auth.client_pem)
        if self.auth.token_file is not None:
            # Re-read on every call: projected tokens are rotated on disk.
            token = self.auth.token_file.read_text().strip()
            session.headers["Authorization"] = f"Bearer {token}"
        return session

    def checkpoint(
        self, namespace: str, pod: str, container: str, timeout_seconds: int | None
    ) -> str:
        """Checkpoint one container; the host path of the archive the kubelet wrote."""
        target = f"{namespace}/{pod}/{container}"
        path = "/checkpoint/" + "/".join(
            quote(part, safe="") for part in (namespace, pod, container)
        )
        params = {"timeout": str(timeout_seconds)} if timeout_seconds else None
        waited = self.deadline(timeout_seconds)
        response = self._post(path, params, waited, target)
        if response.status_code != 200:
            raise _error(
                outcomes.classify_http(
                    response.status_code,
                    response.text,
                    node=self.node,
                    target=target,
                    criu_logs=self.criu_logs,
                )
            )
        return _archive_path(response, self.node)

    def deadline(self, timeout_seconds: int | None) -> float:
        """Seconds the agent waits for one checkpoint. Giving up before the kubelet does closes
        the connection, which cancels the dump (or leaves an archive no job claims), so this is
        as long as the kubelet really may take, plus the margin."""
        return kubelet_deadline(timeout_seconds, self.runtime_request_timeout) + self.timeout_margin

    def probe(self, path: str, *, timeout: float = 10.0) -> tuple[int, str]:
        """POST ``path`` (the readiness probe's checkpoint of a pod that cannot exist) and
        return the kubelet's (status, body); transport failures raise :class:`KubeletError`."""
        response = self._post(path, None, timeout, path)
        return response.status_code, response.text[:4096]

    def _post(
        self, path: str, params: dict[str, str] | None, waited: float, target: str
    ) -> requests.Response:
        try:
            with self._session() as session:
                return session.post(self.base_url + path, params=params, timeout=(10.0, waited))
        except requests.exceptions.SSLError as exc:
            raise _error(outcomes.tls_error(self.node, _root_cause(exc))) from exc
        except requests.exceptions.ConnectTimeout as exc:
            raise _error(outcomes.unreachable(self.node, _root_cause(exc))) from exc
        except requests.exceptions.Timeout as exc:
            raise _error(outcomes.timeout(self.node, target, waited), abandoned=True) from exc
        except requests.exceptions.ConnectionError as exc:
            cause = _root_cause(exc)
            if _is_tls_failure(exc):
                raise _error(outcomes.tls_error(self.node, cause)) from exc
            # urllib3 raises a ProtocolError as is once the request is out (requests sends it
            # without read retries); a failed connect comes wrapped in a MaxRetryError.
            sent = bool(exc.args) and isinstance(exc.args[0], urllib3.exceptions.ProtocolError)
            raise _error(outcomes.unreachable(self.node, cause), abandoned=sent) from exc


def _archive_path(response: requests.Response, node: str) -> str:
    try:
        items = json.loads(response.text)["items"]
        if isinstance(items, list) and len(items) == 1 and isinstance(items[0], str):
            return items[0]
    except (ValueError, KeyError, TypeError):
        pass
    raise _error(
        outcomes.Outcome(
            outcomes.KUBELET_BAD_RESPONSE,
            f"kubelet on {node} answered 200 without one archive path: {response.text[:200]!r}",
            status_code=200,
        )
    )


def _error(outcome: outcomes.Outcome, *, abandoned: bool = False) -> KubeletError:
    if abandoned:
        return KubeletCallAbandoned(
            outcome.message,
            reason=outcome.reason,
            status_code=outcome.status_code,
            remediation=outcome.remediation,
        )
    if outcome.criu_log_excerpt:
        return KubeletRuntimeError(
            outcome.message,
            excerpt=outcome.criu_log_excerpt,
            reason=outcome.reason,
            status_code=outcome.status_code,
            remediation=outcome.remediation,
        )
    return KubeletError(
        outcome.message,
        reason=outcome.reason,
        status_code=outcome.status_code,
        remediation=outcome.remediation,
    )


def _host_for_url(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _root_cause(exc: BaseException) -> str:
    seen: BaseException = exc
    while True:
        nxt = seen.__cause__ or seen.__context__
        if nxt is None or nxt is seen:
            break
        seen = nxt
    for arg in getattr(exc, "args", ()):
        inner = getattr(arg, "reason", None)
        if isinstance(inner, BaseException):
            seen = inner
    return f"{type(seen).__name__}: {seen}"[:300]


def _is_tls_failure(exc: BaseException) -> bool:
    """urllib3 sometimes wraps a handshake failure in a plain ConnectionError: as a
    MaxRetryError's ``reason``, or, when the server's alert came after the request went out, as
    an argument of a ProtocolError (``('Connection aborted.', SSLError(...))``)."""
    pending: list[BaseException] = [exc]
    seen: set[int] = set()
    while pending and len(seen) < 32:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ssl.SSLError):
            return True
        linked = [current.__cause__, current.__context__, getattr(current, "reason", None)]
        linked.extend(current.args)
        pending.extend(e for e in linked if isinstance(e, BaseException))
    return False
