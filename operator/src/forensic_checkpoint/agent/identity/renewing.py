"""A certificate of the agent's own, asked for and renewed through CertificateSigningRequests
that the operator's signer approves for this node only, one
:class:`~forensic_checkpoint.domain.identity.profiles.Profile` each: the serving certificate
(``--serving-certificate=csr``, signer ``forensic-checkpoint.dev/agent-serving``, served by the
TLS server) and the kubelet client certificate (``--kubelet-client-certificate=csr``, signer
``forensic-checkpoint.dev/kubelet-client``, loaded by the kubelet client on every call; its CA
is in the kubelets' client CA bundle only, so it is worthless against the API server).

One daemon thread: at start it keeps a certificate a previous run left if it is still good,
otherwise it makes a new key and asks; then it sleeps until the renewal time
(``domain.identity.renewal``) and asks again with a new key, replacing the file atomically; its
user (the TLS server, the kubelet client) loads it again for new connections without a restart.
A denied, failed or unanswered
request is logged with the signer's message, deleted, and asked again after a back-off. Until
the first certificate arrives :attr:`RenewedCertificate.pending` says what the agent waits for:
the heartbeat publishes it, and the operator does not call an agent without a certificate.
A request is deleted once its certificate is installed, or when it had no answer; a refused one
is left for ``kubectl get csr`` (the cluster removes it after an hour).
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec

from forensic_checkpoint.agent.identity import keys
from forensic_checkpoint.agent.jobs import utcnow, write_private
from forensic_checkpoint.agent.ports import CsrClient
from forensic_checkpoint.domain.identity import renewal
from forensic_checkpoint.domain.identity.profiles import Profile
from forensic_checkpoint.errors import ClusterError, ConfigError

log = logging.getLogger(__name__)

_LABELS = {
    "app.kubernetes.io/part-of": "forensic-checkpoint",
    "app.kubernetes.io/component": "agent",
}
_MAX_RETRY = 600.0


@dataclass(frozen=True)
class CsrSettings:
    #: ``spec.expirationSeconds`` asked for (the API's minimum is 600; the signer may cap it).
    expiration_seconds: int = 86400
    #: Renew once this fraction of the validity has passed.
    renew_fraction: float = renewal.DEFAULT_FRACTION
    #: Seconds between two reads of a pending request.
    poll_interval: float = 1.0
    #: A request without an answer for this long is deleted and made again.
    answer_timeout: float = 300.0
    #: First pause after a refused or unanswered request; doubles up to 10 minutes.
    retry_seconds: float = 15.0

    def validate(self) -> None:
        if self.expiration_seconds < 600:
            raise ConfigError(
                "--certificate-lifetime must be at least 600 seconds (the API's floor)"
            )
        if not 0 < self.renew_fraction < 1:
            raise ConfigError("--certificate-renew-fraction must be between 0 and 1")


class _Refused(Exception):
    """The signer refused (Denied/Failed) or issued something else: the request is kept."""


class _Unanswered(Exception):
    """No answer in time, or the agent stops: the request is deleted."""


class RenewedCertificate:
    def __init__(
        self,
        node_name: str,
        directory: Path,
        csrs: CsrClient,
        settings: CsrSettings,
        *,
        profile: Profile,
        file_name: str,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        settings.validate()
        self.node_name = node_name
        self.profile = profile
        self.subject = profile.subject_for(node_name)
        #: What the certificate is for, in messages (the serving name, the kubelet user).
        self.label = f"{profile.kind} for {self.subject.common_name}"
        self.directory = directory
        #: Certificate and key, one PEM file: its user's certificate *and* key file.
        self.pem_file = directory / f"{file_name}.pem"
        self._pending_record = directory / "pending-request"
        self._csrs = csrs
        self._settings = settings
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._on_ready: Callable[[], None] = lambda: None
        self.current: keys.ServedCertificate | None = None
        #: Why the agent cannot serve yet; empty once it has a certificate.
        self.pending = f"no {self.label} asked for yet"
        self._last_refusal = ""

    # --- start-up ---------------------------------------------------------------------------

    def load(self) -> bool:
        """Keep the certificate a previous run left, if it is this node's and still good."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._forget_pending()
        found = keys.load(self.pem_file)
        if (
            found is None
            or found.subject != self.subject
            or not renewal.usable(self._clock(), found.not_before, found.not_after)
        ):
            return False
        self._installed(found)
        return True

    def start(self, on_ready: Callable[[], None]) -> None:
        """Run the thread; ``on_ready`` is called once, when the first certificate is on disk
        (at once if :meth:`load` found one)."""
        self._on_ready = on_ready
        if self.current is not None:
            on_ready()
        self._thread = threading.Thread(
            target=self._loop, name=f"certificate-{self.pem_file.stem}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # --- the loop ---------------------------------------------------------------------------

    def _loop(self) -> None:
        retry = self._settings.retry_seconds
        while not self._stop.is_set():
            if self.current is not None:
                wait = renewal.seconds_to_renewal(
                    self._clock(),
                    self.current.not_before,
                    self.current.not_after,
                    self._settings.renew_fraction,
                )
                if self._stop.wait(wait):
                    return
            first = self.current is None
            try:
                self.renew()
            except (_Refused, _Unanswered, ClusterError, ValueError) as exc:
                message = exc.message if isinstance(exc, ClusterError) else str(exc)
                log.error(
                    "no %s: %s; asking again in %.0f s",
                    self.label,
                    message,
                    retry,
                )
                if first:
                    self.pending = f"{message}; asking again in {retry:.0f} s"
                    self._last_refusal = message
                if self._stop.wait(retry):
                    return
                retry = min(2 * retry, _MAX_RETRY)
                continue
            retry = self._settings.retry_seconds
            if first:
                self._on_ready()

    def renew(self) -> None:
        """Ask for a certificate with a new key and install it; raises when refused or not
        answered within ``answer_timeout``."""
        key = keys.new_key()
        name = f"forensic-checkpoint-agent-{self.node_name}"[:220].rstrip(".-")
        name = f"{name}-{self.pem_file.stem}"
        name = f"{name}-{secrets.token_hex(6)}"
        write_private(self._pending_record, name.encode())
        self._csrs.create(
            name,
            keys.request_pem(key, self.subject),
            signer=self.profile.signer_name,
            usages=("digital signature", self.profile.required_usage),
            expiration_seconds=self._settings.expiration_seconds,
            labels=_LABELS,
        )
        log.info("asked for a %s: CSR %s", self.label, name)
        if self.current is None:
            # The last refusal stays in the message while the next request waits: it is what
            # an administrator must fix, and the new request will most likely meet it again.
            last = f"; the last one: {self._last_refusal}" if self._last_refusal else ""
            self.pending = (
                f"CertificateSigningRequest {name} for a {self.label} waits for the "
                f"operator's signer {self.profile.signer_name}{last}"
            )
        try:
            certificate = self._answer(name, key)
        except _Refused:
            # A denied request stays for `kubectl get csr` (the cluster removes it after an
            # hour); an unanswered one goes.
            self._pending_record.unlink(missing_ok=True)
            raise
        except BaseException:
            self._delete(name)
            raise
        keys.save(self.pem_file, key, certificate)
        self._delete(name)
        self._installed(keys.describe(certificate))

    def _delete(self, name: str) -> None:
        try:
            self._csrs.delete(name)
        except ClusterError as exc:
            log.warning("cannot delete CSR %s: %s", name, exc.message)
        self._pending_record.unlink(missing_ok=True)

    def _answer(self, name: str, key: ec.EllipticCurvePrivateKey) -> bytes:
        waited = 0.0
        while waited < self._settings.answer_timeout:
            outcome = self._csrs.outcome(name)
            if outcome.refusal is not None:
                raise _Refused(f"CertificateSigningRequest {name} {outcome.refusal}")
            if outcome.certificate is not None:
                served = keys.describe(outcome.certificate)
                if served.subject != self.subject or not keys.matches(key, outcome.certificate):
                    raise _Refused(f"CSR {name}: the issued certificate is not the one asked for")
                return outcome.certificate
            if self._stop.wait(self._settings.poll_interval):
                raise _Unanswered("the agent is stopping")
            waited += self._settings.poll_interval
        raise _Unanswered(
            f"CertificateSigningRequest {name} had no answer within "
            f"{self._settings.answer_timeout:.0f} s: is the operator (the signer "
            f"{self.profile.signer_name}) running?"
        )

    def _installed(self, served: keys.ServedCertificate) -> None:
        self.current = served
        self.pending = ""
        self._last_refusal = ""
        log.info(
            "%s valid until %s (serial %x), renewal at %s",
            self.label,
            served.not_after.isoformat(),
            served.serial,
            renewal.renew_at(
                served.not_before, served.not_after, self._settings.renew_fraction
            ).isoformat(),
        )

    def _forget_pending(self) -> None:
        """Delete the request a previous run left unanswered (its key died with that run)."""
        try:
            name = self._pending_record.read_text(encoding="utf-8").strip()
        except OSError:
            return
        if name:
            self._delete(name)
        self._pending_record.unlink(missing_ok=True)
