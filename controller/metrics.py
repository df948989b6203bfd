"""Every Prometheus metric in one place, on a registry of our own (never the global one).

Names follow controller-runtime's (``controller_reconcile_total`` …) under one prefix. Label
values are bounded and never secret: results, HTTP methods and statuses, event types, and
registry host names.

``Metrics`` is the observer of every adapter that counts something: each declares one small
observer Protocol next to it (``RequestObserver``, ``PublishObserver``, ``QueueObserver``,
``EventObserver``) and the wiring hands it ``metrics``; the engine's parts (the controller, the
reconcilers, the source) take ``Metrics`` itself. A new metric is declared here and fed where
it happens: two files.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from controller.logingate import LOGIN_ATTEMPTS, LoginAttempt
from controller.model import (
    AppState,
    BundleManifest,
    DelayResetOutcome,
    ReconcileOutcome,
    RefreshOutcome,
    RescueOutcome,
)
from controller.pullfailure import PULL_FAILURE_REASONS
from controller.registryapi import IMAGE_CHECK_RESULTS, ImageCheckResult

__all__ = ["PREFIX", "Metrics"]

PREFIX = "marathon_pullsecret_"
RECONCILE_RESULTS = get_args(ReconcileOutcome)
APP_STATES = get_args(AppState)
PUBLISH_RESULTS = get_args(RefreshOutcome)
DELAY_RESET_RESULTS = get_args(DelayResetOutcome)
RESCUE_RESULTS = get_args(RescueOutcome)
WITHHELD_REASONS = ("fight",)
"""Why a write the plan wanted was not made (``writes_withheld_total``)."""
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

        def counter(name: str, doc: str, labels: Iterable[str] = ()) -> Counter:
            return Counter(PREFIX + name, doc, list(labels), registry=registry)

        def gauge(name: str, doc: str, labels: Iterable[str] = ()) -> Gauge:
            return Gauge(PREFIX + name, doc, list(labels), registry=registry)

        def histogram(name: str, doc: str, labels: Iterable[str] = ()) -> Histogram:
            return Histogram(PREFIX + name, doc, list(labels), registry=registry,
                             buckets=_LATENCY_BUCKETS)

        self.reconcile_total = counter(
            "controller_reconcile_total", "Reconciles by result.", ["result"])
        self.reconcile_errors = counter(
            "controller_reconcile_errors_total", "Reconciles that failed.")
        self.reconcile_seconds = histogram(
            "controller_reconcile_time_seconds", "Time spent in one reconcile.")
        self.queue_depth = gauge("workqueue_depth", "Keys waiting in the work queue.")
        self.queue_adds = counter("workqueue_adds_total", "Keys added to the work queue.")
        self.queue_retries = counter("workqueue_retries_total", "Keys re-added with backoff.")
        self.queue_latency = histogram(
            "workqueue_queue_duration_seconds", "Time a key waits before a worker takes it.")
        self.marathon_requests = counter(
            "marathon_requests_total", "Requests to Marathon by method and status.",
            ["method", "status"])
        self.marathon_latency = histogram(
            "marathon_request_duration_seconds", "Marathon request latency.", ["method"])
        self.events = counter(
            "marathon_events_total", "Marathon events received, by type.", ["event_type"])
        self._event_counts: dict[str, Counter] = {}
        self.sse_reconnects = counter(
            "marathon_sse_reconnects_total", "Event stream reconnects.")
        self.sse_connected = gauge(
            "marathon_sse_connected", "1 while the event stream is connected.")
        self.last_resync = gauge(
            "marathon_last_resync_timestamp_seconds", "When the last full relist finished.")
        self.publishes = counter(
            "bundle_publishes_total", "Bundle refreshes by registry and result.",
            ["registry", "result"])
        self.bundle_created = gauge(
            "bundle_created_timestamp_seconds", "When the current bundle was built.",
            ["registry"])
        self.bundle_expiry = gauge(
            "bundle_expiry_timestamp_seconds",
            "When the current bundle's credentials (e.g. an ECR token) expire; 0: never.",
            ["registry"])
        self.bundle_refresh_due = gauge(
            "bundle_refresh_timestamp_seconds", "When the bundle is next due.", ["registry"])
        self.bundle_last_publish = gauge(
            "bundle_last_publish_timestamp_seconds",
            "When a bundle was last written successfully.", ["registry"])
        self.deployments_triggered = counter(
            "deployments_triggered_total", "Marathon deployments started by the controller.")
        self.deployments_in_flight = gauge(
            "deployments_in_flight", "Controller-started deployments still running.")
        self.registry_logins = counter(
            "registry_login_total",
            "Logins with a registry before publishing (or re-checking) its credential, by result.",
            ["registry", "result"])
        self.credentials_rejected = gauge(
            "registry_credentials_rejected",
            "1 while the registry refuses the credential its source gives (nothing from it is "
            "published); 0 otherwise.", ["registry"])
        self.apps = gauge("apps_managed", "Opted-in apps by state.", ["state"])
        self.leader = gauge("leader", "1 while this replica is the leader.")
        self.image_pull_failures = counter(
            "image_pull_failures_total",
            "Tasks of opted-in apps that failed to pull their image, by registry and reason.",
            ["registry", "reason"])
        self.delay_resets = counter(
            "delay_resets_total",
            "Launch delay resets (DELETE /v2/queue/{app}/delay) after a fix, by result.",
            ["result"])

        for result in RECONCILE_RESULTS:
            self.reconcile_total.labels(result=result)
        for state in APP_STATES:
            self.apps.labels(state=state)
        self.deployments_rescued = counter(
            "deployments_rescued_total",
            "Stuck deployments (their tasks cannot pull, their definition lacks the entry) the "
            "controller forced one write over, by result; not_alone: not forced, as the "
            "deployment changes other apps too.", ["result"])
        self.image_checks = counter(
            "image_checks_total",
            "Questions to a registry whether its credential may pull an app's image (asked "
            "once per image and credential), by registry and answer.", ["registry", "result"])
        self.writes_withheld = counter(
            "writes_withheld_total",
            "Writes the plan wanted and the controller did not make, by reason (fight: another "
            "writer keeps removing the entry).", ["reason"])

        for result in DELAY_RESET_RESULTS:
            self.delay_resets.labels(result=result)
        for result in RESCUE_RESULTS:
            self.deployments_rescued.labels(result=result)
        for reason in WITHHELD_REASONS:
            self.writes_withheld.labels(reason=reason)

    def init_registries(self, registries: Iterable[str]) -> None:
        """Known label sets start at 0, so dashboards and alerts see them before any event."""
        for registry in registries:
            for result in PUBLISH_RESULTS:
                self.publishes.labels(registry=registry, result=result)
            for login in LOGIN_ATTEMPTS:
                self.registry_logins.labels(registry=registry, result=login)
            self.credentials_rejected.labels(registry=registry).set(0)
            for reason in PULL_FAILURE_REASONS:
                self.image_pull_failures.labels(registry=registry, reason=reason)
            for result in IMAGE_CHECK_RESULTS:
                self.image_checks.labels(registry=registry, result=result)

    # -- MarathonClient's RequestObserver -----------------------------------------------------

    def on_request(self, method: str, status: str, seconds: float) -> None:
        self.marathon_requests.labels(method=method, status=status).inc()
        self.marathon_latency.labels(method=method).observe(seconds)

    # -- EventWatcher's EventObserver ---------------------------------------------------------

    def on_stream_connected(self, connected: bool) -> None:
        self.sse_connected.set(1 if connected else 0)

    def on_event(self, event_type: str) -> None:
        """Once per event of a busy stream: the labelled child is kept."""
        child = self._event_counts.get(event_type)
        if child is None:
            child = self._event_counts[event_type] = self.events.labels(event_type=event_type)
        child.inc()

    def on_reconnect(self) -> None:
        self.sse_reconnects.inc()

    # -- BundleManager's PublishObserver -------------------------------------------------------

    def on_publish(self, registry: str, outcome: RefreshOutcome,
                   manifest: BundleManifest | None) -> None:
        self.publishes.labels(registry=registry, result=outcome).inc()
        if manifest is not None and outcome in ("published", "repaired"):
            self.bundle_last_publish.labels(registry=registry).set(manifest.created_at.timestamp())
        if manifest is not None:
            self.bundle_created.labels(registry=registry).set(manifest.created_at.timestamp())
            self.bundle_refresh_due.labels(registry=registry).set(
                manifest.refresh_at.timestamp())
            self.bundle_expiry.labels(registry=registry).set(
                manifest.expires_at.timestamp() if manifest.expires_at else 0)


    def on_login(self, registry: str, result: LoginAttempt, rejected: bool) -> None:
        self.registry_logins.labels(registry=registry, result=result).inc()
        self.credentials_rejected.labels(registry=registry).set(1 if rejected else 0)

    # -- ImageChecks' CheckObserver -----------------------------------------------------------

    def on_image_check(self, registry: str, result: ImageCheckResult) -> None:
        self.image_checks.labels(registry=registry, result=result).inc()

    # -- WorkQueue's QueueObserver (the app queue's: one set of workqueue_* gauges) ------------

    def on_add(self, key: object) -> None:
        self.queue_adds.inc()

    def on_get(self, key: object, waited_seconds: float) -> None:
        self.queue_latency.observe(waited_seconds)

    def on_retry(self, key: object) -> None:
        self.queue_retries.inc()

    def on_depth(self, depth: int) -> None:
        self.queue_depth.set(depth)
