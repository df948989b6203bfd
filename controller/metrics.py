"""Every Prometheus metric in one place, on a collector registry of our own (never the global
one).

Names follow controller-runtime's and client-go's under one prefix: the reconcile series carry
the controller they count (``controller="app"`` or ``"registry"``, as controller-runtime's
``pkg/internal/controller/metrics/metrics.go``), and every work queue is observed under its
``name`` (client-go ``util/workqueue/metrics.go``), ``unfinished_work_seconds`` and
``longest_running_processor_seconds`` included, read from the queues when scraped: a worker stuck
in the write rate limit or the deployment budget shows as a number that grows. Label values are
bounded and never secret: results, HTTP methods and statuses, event types, registry hosts,
controller and queue names.

``Metrics`` is the observer of every part that counts something: each declares one small
observer Protocol next to it (``RequestObserver``, ``PublishObserver``, ``QueueObserver``,
``EventObserver``, ``CheckObserver``, ``HandlerObserver``, ``AppObserver``,
``RemediationObserver``) and is handed ``metrics``; no code outside this module touches a
metric object. A new metric is declared here and fed through its part's observer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Final, get_args

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from controller.logingate import LOGIN_ATTEMPTS, LoginAttempt
from controller.model import (
    AppState,
    BundleManifest,
    DelayResetOutcome,
    ErrorKind,
    ReconcileOutcome,
    RefreshOutcome,
    RescueOutcome,
)
from controller.pullfailure import PULL_FAILURE_REASONS, PullFailureReason
from controller.registryapi.results import IMAGE_CHECK_RESULTS, ImageCheckResult

__all__ = ["APP_STATES", "CONTROLLERS", "PREFIX", "Metrics", "QueueMetrics"]

PREFIX: Final = "marathon_pullsecret_"
RECONCILE_RESULTS = get_args(ReconcileOutcome)
APP_STATES = get_args(AppState)
PUBLISH_RESULTS = get_args(RefreshOutcome)
DELAY_RESET_RESULTS = get_args(DelayResetOutcome)
RESCUE_RESULTS = get_args(RescueOutcome)
ERROR_KINDS = get_args(ErrorKind)
CONTROLLERS: Final = ("app", "registry")
"""The two controllers of a term, as their series name them (also their queues' names)."""
WITHHELD_REASONS: Final = ("fight",)
"""Why a write the plan wanted was not made (``writes_withheld_total``)."""
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class _QueueGauges(Collector):
    """``unfinished_work_seconds`` and ``longest_running_processor_seconds`` of each queue,
    asked of the queues themselves when scraped (client-go computes them every half second)."""

    def __init__(self) -> None:
        self.queues: dict[str, tuple[Callable[[], float], Callable[[], float]]] = {}

    def collect(self) -> Iterator[Metric]:
        unfinished = GaugeMetricFamily(
            PREFIX + "workqueue_unfinished_work_seconds",
            "How long the keys workers hold now have been held, together; a stuck worker "
            "makes it grow.", labels=["name"])
        longest = GaugeMetricFamily(
            PREFIX + "workqueue_longest_running_processor_seconds",
            "How long the key held longest has been held.", labels=["name"])
        for name, (total, top) in sorted(self.queues.items()):
            unfinished.add_metric([name], total())
            longest.add_metric([name], top())
        yield unfinished
        yield longest


class QueueMetrics:
    """One queue's ``QueueObserver``: the ``workqueue_*`` series of its ``name``."""

    def __init__(self, metrics: Metrics, name: str) -> None:
        self._adds = metrics.queue_adds.labels(name=name)
        self._retries = metrics.queue_retries.labels(name=name)
        self._depth = metrics.queue_depth.labels(name=name)
        self._waited = metrics.queue_latency.labels(name=name)
        self._worked = metrics.queue_work.labels(name=name)

    def on_add(self, key: object) -> None:
        self._adds.inc()

    def on_get(self, key: object, waited_seconds: float) -> None:
        self._waited.observe(waited_seconds)

    def on_done(self, key: object, worked_seconds: float) -> None:
        self._worked.observe(worked_seconds)

    def on_retry(self, key: object) -> None:
        self._retries.inc()

    def on_depth(self, depth: int) -> None:
        self._depth.set(depth)


class Metrics:
    def __init__(self, collectors: CollectorRegistry) -> None:
        self.collectors = collectors
        """The Prometheus collector registry every series here is on (served at /metrics)."""

        def counter(name: str, doc: str, labels: Iterable[str] = ()) -> Counter:
            return Counter(PREFIX + name, doc, list(labels), registry=collectors)

        def gauge(name: str, doc: str, labels: Iterable[str] = ()) -> Gauge:
            return Gauge(PREFIX + name, doc, list(labels), registry=collectors)

        def histogram(name: str, doc: str, labels: Iterable[str] = ()) -> Histogram:
            return Histogram(PREFIX + name, doc, list(labels), registry=collectors,
                             buckets=_LATENCY_BUCKETS)

        # -- the controllers and their queues (controller-runtime, client-go) ------------------
        self.reconcile_total = counter(
            "controller_reconcile_total", "Reconciles by controller and result.",
            ["controller", "result"])
        self.reconcile_errors = counter(
            "controller_reconcile_errors_total",
            "Reconciles that failed, by controller and kind (terminal: not retried; timeout: "
            "reconcile.timeout_seconds passed; transient: retried with backoff).",
            ["controller", "kind"])
        self.reconcile_seconds = histogram(
            "controller_reconcile_time_seconds", "Time spent in one reconcile.", ["controller"])
        self.active_workers = gauge(
            "controller_active_workers", "Workers reconciling a key now.", ["controller"])
        self.queue_depth = gauge("workqueue_depth", "Keys waiting for a worker.", ["name"])
        self.queue_adds = counter("workqueue_adds_total", "Keys added to the queue.", ["name"])
        self.queue_retries = counter(
            "workqueue_retries_total", "Keys re-added with backoff.", ["name"])
        self.queue_latency = histogram(
            "workqueue_queue_duration_seconds", "Time a key waits before a worker takes it.",
            ["name"])
        self.queue_work = histogram(
            "workqueue_work_duration_seconds", "Time a worker holds a key.", ["name"])
        self._queue_gauges = _QueueGauges()
        collectors.register(self._queue_gauges)

        # -- Marathon and its event stream ---------------------------------------------------
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

        # -- bundles and registries ------------------------------------------------------------
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
        self.registry_logins = counter(
            "registry_login_total",
            "Logins with a registry before publishing (or re-checking) its credential, by "
            "result; withheld: not tried, the same credential was refused too recently.",
            ["registry", "result"])
        self.credentials_rejected = gauge(
            "registry_credentials_rejected",
            "1 while the registry refuses the credential its source gives (nothing from it is "
            "published); 0 otherwise.", ["registry"])
        self.image_checks = counter(
            "image_checks_total",
            "Questions to a registry whether its credential may pull an app's image (asked "
            "once per image and credential), by registry and answer.", ["registry", "result"])

        # -- apps ------------------------------------------------------------------------------
        self.deployments_triggered = counter(
            "deployments_triggered_total", "Marathon deployments started by the controller.")
        self.deployments_in_flight = gauge(
            "deployments_in_flight", "Controller-started deployments still running.")
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
        self.deployments_rescued = counter(
            "deployments_rescued_total",
            "Stuck deployments (their tasks cannot pull, their definition lacks the entry) the "
            "controller forced one write over, by result; not_alone: not forced, as the "
            "deployment changes other apps too.", ["result"])
        self.writes_withheld = counter(
            "writes_withheld_total",
            "Writes the plan wanted and the controller did not make, by reason (fight: another "
            "writer keeps removing the entry).", ["reason"])

        for controller in CONTROLLERS:  # known label sets start at 0 (controller-runtime)
            for result in RECONCILE_RESULTS:
                self.reconcile_total.labels(controller=controller, result=result)
            for kind in ERROR_KINDS:
                self.reconcile_errors.labels(controller=controller, kind=kind)
            self.active_workers.labels(controller=controller).set(0)
        for state in APP_STATES:
            self.apps.labels(state=state)
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

    # -- work queues -------------------------------------------------------------------------

    def queue(self, name: str, *, unfinished: Callable[[], float],
              longest: Callable[[], float]) -> QueueMetrics:
        """The observer of the queue ``name``, whose unfinished work is read when scraped (a
        queue of a new term replaces the last one's of that name)."""
        self._queue_gauges.queues[name] = (unfinished, longest)
        return QueueMetrics(self, name)

    # -- the handler's HandlerObserver -------------------------------------------------------

    def on_reconciled(self, controller: str, outcome: ReconcileOutcome, seconds: float,
                      error: ErrorKind | None) -> None:
        self.reconcile_total.labels(controller=controller, result=outcome).inc()
        if error is not None:
            self.reconcile_errors.labels(controller=controller, kind=error).inc()
        self.reconcile_seconds.labels(controller=controller).observe(seconds)

    def on_worker(self, controller: str, active: int) -> None:
        self.active_workers.labels(controller=controller).set(active)

    # -- the app reconciler's AppObserver ----------------------------------------------------

    def on_settled(self, count: int) -> None:
        """``count`` apps were planned inline and needed nothing: successful app reconciles."""
        self.reconcile_total.labels(controller="app", result="success").inc(count)

    def on_deployment_started(self) -> None:
        self.deployments_triggered.inc()

    def on_rescue(self, result: RescueOutcome) -> None:
        self.deployments_rescued.labels(result=result).inc()

    def on_withheld(self, reason: str) -> None:
        self.writes_withheld.labels(reason=reason).inc()

    def on_apps(self, counts: Mapping[str, int], deployments_in_flight: int) -> None:
        for state in APP_STATES:
            self.apps.labels(state=state).set(counts.get(state, 0))
        self.deployments_in_flight.set(deployments_in_flight)

    # -- the remediator's RemediationObserver -------------------------------------------------

    def on_pull_failure(self, registry: str, reason: PullFailureReason) -> None:
        self.image_pull_failures.labels(registry=registry, reason=reason).inc()

    def on_delay_reset(self, result: DelayResetOutcome) -> None:
        self.delay_resets.labels(result=result).inc()

    # -- the source's and the manager's ------------------------------------------------------

    def on_relisted(self, at: float) -> None:
        self.last_resync.set(at)

    def on_leader(self, leading: bool) -> None:
        self.leader.set(1 if leading else 0)
        if not leading:
            self.sse_connected.set(0)

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
