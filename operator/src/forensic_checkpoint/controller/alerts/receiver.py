"""The webhook receiver: HTTP in, decisions out, ForensicCheckpoints created.

Routes (see docs/alerts.md)::

    POST /v1/alerts/alertmanager    Alertmanager webhook, payload version 4
    POST /v1/alerts/falcosidekick   Falcosidekick webhook output (one Falco event)
    GET  /healthz                   200 "ok"
    GET  /metrics                   Prometheus text format

Answers: 401 without the bearer token, 413 over the byte cap (however many alerts a body holds:
a storm sends thousands at once and no sender resends), 400 for invalid or too deeply nested
JSON or a schema violation (the body says which field; ``body`` decodes in a worker thread),
503 when the cluster could not be reached (senders retry 5xx; the decisions that failed are
taken back so the retry is not a "duplicate"), 200 otherwise, with one entry per alert saying
what was decided and why (decided in slices of at most :data:`SLICE_SECONDS` that yield to the
operator's loop, and encoded in a worker thread). Any other failure is a 500 and a log
line; the server keeps running. Each policy refresh also writes what every policy matched and
created into its status. Over 400 lines: the request path, the refreshes and the capture steps
share the receiver's state (the gate, the cached policies, the tallies), so they stay in one
class.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from pydantic import TypeAdapter

from forensic_checkpoint.api.alerts import AlertmanagerAlert, AlertmanagerWebhook, FalcoEvent
from forensic_checkpoint.api.policy import ContainerSelection, ForensicCapturePolicy
from forensic_checkpoint.controller.alerts.auth import TokenFile
from forensic_checkpoint.controller.alerts.backend import CaptureBackend
from forensic_checkpoint.controller.alerts.body import (
    BodyRefused,
    Parser,
    decode_in_thread,
    read_body,
    validate_list,
)
from forensic_checkpoint.controller.alerts.config import AlertReceiverConfig
from forensic_checkpoint.controller.alerts.metrics import AlertMetrics, metrics_for
from forensic_checkpoint.controller.alerts.queue_events import QueueFullEvents
from forensic_checkpoint.domain.alerts.capture import build_checkpoint
from forensic_checkpoint.domain.alerts.events import AlertEvent, from_alertmanager, from_falco
from forensic_checkpoint.domain.alerts.limits import Clock
from forensic_checkpoint.domain.alerts.policy import AlertGate, Decision, DecisionReason
from forensic_checkpoint.domain.alerts.policy_status import Tally, next_status
from forensic_checkpoint.domain.alerts.target import resolve_container_id
from forensic_checkpoint.errors import ForensicCheckpointError

log = logging.getLogger("forensic_checkpoint.alerts")

ROUTE_ALERTMANAGER = "/v1/alerts/alertmanager"
ROUTE_FALCOSIDEKICK = "/v1/alerts/falcosidekick"
#: The longest the receiver decides alerts of one body before it lets the operator's loop run
#: (a 6,500-alert body takes about half a second of decisions in all).
SLICE_SECONDS = 0.005


#: The alerts of a notification, validated in slices (``body.validate_list``).
_ALERTS = TypeAdapter(list[AlertmanagerAlert])


def parse_alertmanager(data: Any) -> list[AlertEvent]:
    alerts = data.get("alerts") if isinstance(data, dict) else None
    if isinstance(alerts, list):
        envelope = AlertmanagerWebhook.model_validate({**data, "alerts": []})
        payload = envelope.model_copy(update={"alerts": validate_list(alerts, _ALERTS, "alerts")})
    else:
        payload = AlertmanagerWebhook.model_validate(data)  # names what is wrong with "alerts"
    if payload.truncated_alerts:
        # max_alerts cut the group: those alerts never reach us, so say so where it is seen.
        log.warning(
            json.dumps(
                {
                    "event": "alerts-truncated",
                    "source": "alertmanager",
                    "groupKey": payload.group_key,
                    "truncatedAlerts": payload.truncated_alerts,
                }
            )
        )
    return from_alertmanager(payload)


def parse_falcosidekick(data: Any) -> list[AlertEvent]:
    return [from_falco(FalcoEvent.model_validate(data))]


@dataclass(frozen=True)
class Outcome:
    """A decision after the receiver acted on it (the reason may have changed)."""

    decision: Decision
    reason: DecisionReason
    message: str
    checkpoint: str = ""

    def as_json(self) -> dict[str, Any]:
        event = self.decision.event
        answer: dict[str, Any] = {
            "alert": event.name,
            "fingerprint": event.fingerprint,
            "reason": self.reason.value,
            "message": self.message,
        }
        if self.checkpoint:
            answer["checkpoint"] = self.checkpoint
        return answer


class _Unavailable(Exception):
    """The cluster could not be asked; answer 503 so the sender retries."""


class AlertReceiver:
    def __init__(
        self,
        config: AlertReceiverConfig,
        backend: CaptureBackend,
        *,
        registry: CollectorRegistry | None = None,
        clock: Clock = time.monotonic,
    ) -> None:
        config.validate()
        self.config = config
        self.backend = backend
        self.gate = AlertGate(limits=config.limits, mapping=config.mapping, clock=clock)
        self.metrics: AlertMetrics = metrics_for(registry)
        self._registry = registry
        self._clock = clock
        self._token = TokenFile(config.token_file) if config.token_file else None
        self._policies: list[ForensicCapturePolicy] | None = None
        self._refreshed_at = float("-inf")
        self._refresh_lock = asyncio.Lock()
        self._refresh_task: asyncio.Task[None] | None = None
        self._counted_at = float("-inf")
        self._count_lock = asyncio.Lock()
        #: per policy name: what it matched and created since its status was last written
        self._tallies: dict[str, Tally] = {}
        self._queue_full_events = QueueFullEvents(backend, clock)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.config.max_body_bytes)
        app.router.add_post(ROUTE_ALERTMANAGER, self._route(ROUTE_ALERTMANAGER, parse_alertmanager))
        app.router.add_post(
            ROUTE_FALCOSIDEKICK, self._route(ROUTE_FALCOSIDEKICK, parse_falcosidekick)
        )
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics)
        return app

    # --- HTTP --------------------------------------------------------------------------------

    def _route(
        self, route: str, parse: Parser
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handler(request: web.Request) -> web.StreamResponse:
            started = time.perf_counter()
            try:
                status, body = await self._handle(request, parse)
            except Exception:  # the receiver must answer whatever happens
                log.exception("alert receiver: unexpected error on %s", route)
                status, body = 500, {"error": "internal error; see the operator log"}
            # Thousands of decisions are a megabyte of JSON: encoded off the loop.
            text = await asyncio.to_thread(json.dumps, body, default=_as_json)
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)
            headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
            return web.Response(
                text=text, status=status, headers=headers, content_type="application/json"
            )

        return handler

    async def _handle(self, request: web.Request, parse: Parser) -> tuple[int, dict[str, Any]]:
        if self._token is not None and not self._token.accepts(
            request.headers.get("Authorization")
        ):
            return 401, {"error": "a valid bearer token is required"}
        try:
            raw = await read_body(request, self.config.max_body_bytes)
            events = await decode_in_thread(raw, parse)
        except BodyRefused as refused:
            self.metrics.refused.labels(request.path, refused.reason).inc()
            return refused.status, refused.answer
        try:
            await self._ensure_fresh()
        except _Unavailable as exc:
            return 503, {"error": str(exc)}

        outcomes = []
        slice_started = time.perf_counter()
        for event in events:
            if time.perf_counter() - slice_started >= SLICE_SECONDS:
                await asyncio.sleep(0)  # a large body must not hold the operator's loop
                slice_started = time.perf_counter()
            await self._count_if_capped()
            outcomes.append(await self._act(self.gate.decide(event, self._policies or [])))
        await self._queue_full_events.report(outcomes)
        failed = any(o.reason is DecisionReason.CREATE_FAILED for o in outcomes)
        return (503 if failed else 200), {"received": len(events), "decisions": outcomes}

    async def _healthz(self, _request: web.Request) -> web.StreamResponse:
        return web.Response(text="ok")

    async def _metrics(self, _request: web.Request) -> web.StreamResponse:
        from prometheus_client import REGISTRY

        payload = generate_latest(self._registry or REGISTRY)
        return web.Response(body=payload, headers={"Content-Type": CONTENT_TYPE_LATEST})

    # --- cluster state -----------------------------------------------------------------------

    async def _ensure_fresh(self) -> None:
        """Only the very first read of the policies holds a request up; later refreshes run in
        the background, so that an alert storm is answered from memory while the API server
        lists (a list of many ForensicCheckpoints takes a while)."""
        if self._policies is None:
            await self._refresh()
            return
        stale = self._clock() - self._refreshed_at >= self.config.refresh_seconds
        if stale and (self._refresh_task is None or self._refresh_task.done()):
            self._refresh_task = asyncio.create_task(self._refresh_in_background())

    async def _refresh_in_background(self) -> None:
        try:
            await self._refresh()
        except Exception:  # logged; the next request schedules another try
            log.exception("alert receiver: background refresh failed")

    async def close(self) -> None:
        if self._refresh_task is not None and not self._refresh_task.done():
            self._refresh_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresh_task

    async def _refresh(self) -> None:
        """Re-read policies and active captures when the cached ones are older than allowed.

        A failed refresh keeps the last good policies; with none ever read there is nothing to
        decide with, and the sender is told to retry.
        """
        if self._clock() - self._refreshed_at < self.config.refresh_seconds:
            return
        async with self._refresh_lock:
            if self._clock() - self._refreshed_at < self.config.refresh_seconds:
                return
            try:
                policies = await self.backend.policies()
                listed_at = self._clock()
                active = await self.backend.active_captures()
            except ForensicCheckpointError as exc:
                log.warning("alert receiver: cannot refresh from the cluster: %s", exc.message)
                if self._policies is None:
                    raise _Unavailable(f"cannot read capture policies: {exc.message}") from exc
                return
            self._policies = policies
            self.gate.active.reconcile(active, listed_at)
            self._counted_at = max(self._counted_at, listed_at)
            self._refreshed_at = self._clock()
            await self._write_policy_statuses(policies)

    async def _write_policy_statuses(self, policies: list[ForensicCapturePolicy]) -> None:
        """Fold each policy's tally into its status (read with the list just made). A tally
        whose write fails is kept for the next refresh; nothing is counted twice because the
        counts are added to the status that list returned."""
        now = datetime.now(UTC)
        for policy in policies:
            tally = self._tallies.pop(policy.name, None)
            status = next_status(policy, tally, now)
            if status is None:
                continue
            try:
                await self.backend.write_policy_status(policy.name, status)
            except ForensicCheckpointError as exc:
                log.warning(
                    "alert receiver: cannot write %s's status: %s", policy.name, exc.message
                )
                if tally is not None:
                    self._tallies[policy.name] = tally

    async def _count_if_capped(self) -> None:
        """Before the cap refuses an alert, count the active captures afresh.

        The cached count may be as old as ``refresh_seconds`` and longer after a quiet period;
        captures that finished meanwhile would refuse the first alerts of an incident, and
        Falco does not resend. So a refusal is only ever made on a list that began at most
        ``count_fresh_seconds`` ago; under the cap nothing is listed (an alert storm is answered
        from memory). Concurrent requests share one list.
        """
        if len(self.gate.active) < self.gate.limits.max_concurrent:
            return
        async with self._count_lock:
            if self._clock() - self._counted_at < self.config.count_fresh_seconds:
                return
            listed_at = self._clock()
            try:
                active = await self.backend.active_captures()
            except ForensicCheckpointError as exc:
                log.warning("alert receiver: cannot count active captures: %s", exc.message)
                return
            self.gate.active.reconcile(active, listed_at)
            self._counted_at = listed_at

    async def _act(self, decision: Decision) -> Outcome:
        outcome = await self._capture(decision) if decision.capture else _outcome(decision)
        self.metrics.alerts.labels(decision.event.source.value, outcome.reason.value).inc()
        if decision.policy is not None:
            reason = outcome.reason
            created = outcome.checkpoint if reason in _CREATED else None
            tally = self._tallies.setdefault(decision.policy.name, Tally())
            tally.match(
                datetime.now(UTC),
                created,
                queued=reason is DecisionReason.QUEUED,
                queue_full=reason is DecisionReason.QUEUE_FULL,
            )
        _log(outcome)
        return outcome

    async def _capture(self, decision: Decision) -> Outcome:
        try:
            return await self._try_capture(decision)
        except BaseException:  # a 500 (or cancel): the slot and cooldown are not kept
            self.gate.undo(decision)
            raise

    async def _try_capture(self, decision: Decision) -> Outcome:  # noqa: PLR0911 - one per outcome
        target = decision.target
        policy = decision.policy
        if target is None or policy is None:  # a capture decision always has both
            return _outcome(decision)
        try:
            pod = await self.backend.pod_containers(target.namespace, target.pod)
            if pod is None:
                self.gate.undo(decision, forget_alert=False)
                return _outcome(
                    decision,
                    DecisionReason.POD_NOT_FOUND,
                    f"no pod {target.namespace}/{target.pod}",
                )
            containers = decision.containers
            alerted = policy.spec.capture.containers is ContainerSelection.ALERTED
            if alerted and not containers and target.container_id:
                name = resolve_container_id(target.container_id, pod.ids)
                if name is None:
                    self.gate.undo(decision, forget_alert=False)
                    return _outcome(
                        decision,
                        DecisionReason.CONTAINER_NOT_FOUND,
                        f"no container of the pod has ID {target.container_id}",
                    )
                containers = (name,)
            missing = [c for c in containers if c not in pod.names]
            if missing:
                self.gate.undo(decision, forget_alert=False)
                return _outcome(
                    decision,
                    DecisionReason.CONTAINER_NOT_FOUND,
                    f"pod {target.pod} has no container {missing[0]}",
                )
            checkpoint = build_checkpoint(decision, containers, accepted_at=datetime.now(UTC))
            created = await self.backend.create(checkpoint)
        except ForensicCheckpointError as exc:
            self.gate.undo(decision)
            return _outcome(decision, DecisionReason.CREATE_FAILED, exc.message)
        ref = f"{target.namespace}/{checkpoint.metadata['name']}"
        if not created:
            self.gate.undo(decision, forget_alert=False)
            return _outcome(decision, DecisionReason.ALREADY_EXISTS, f"{ref} exists", ref)
        self.gate.active.confirm(decision.capture_key)
        self.metrics.created.labels(decision.event.source.value).inc()
        # Capture, or Queued: created now, admitted by the operator when a slot frees.
        return _outcome(decision, decision.reason, decision.message, ref)


#: Outcomes whose alert got a ForensicCheckpoint.
_CREATED = frozenset({DecisionReason.CAPTURE, DecisionReason.QUEUED})
#: Outcomes logged at WARNING: the alert's evidence is not being captured.
_LOUD = frozenset({DecisionReason.CREATE_FAILED, DecisionReason.QUEUE_FULL})


def _as_json(value: Any) -> Any:
    """``json.dumps``'s hook for the decisions in an answer (run in a worker thread: outcomes
    are frozen and their events immutable)."""
    if isinstance(value, Outcome):
        return value.as_json()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _outcome(
    decision: Decision,
    reason: DecisionReason | None = None,
    message: str | None = None,
    checkpoint: str = "",
) -> Outcome:
    return Outcome(
        decision,
        reason or decision.reason,
        message if message is not None else decision.message,
        checkpoint,
    )


def _log(outcome: Outcome) -> None:
    decision = outcome.decision
    event = decision.event
    record: dict[str, Any] = {
        "event": "alert",
        "source": event.source.value,
        "alert": event.name,
        "fingerprint": event.fingerprint,
        "reason": outcome.reason.value,
        "message": outcome.message,
    }
    if decision.target is not None:
        record["namespace"] = decision.target.namespace
        record["pod"] = decision.target.pod
    if decision.policy is not None:
        record["policy"] = decision.policy.name
    if outcome.checkpoint:
        record["checkpoint"] = outcome.checkpoint
    level = logging.WARNING if outcome.reason in _LOUD else logging.INFO
    log.log(level, json.dumps(record, sort_keys=True))
