"""``Metrics`` is every adapter's observer (mypy checks it fits each Protocol where the wiring
passes it): each hook feeds its metric, on the metrics' own registry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry

from controller.metrics import PREFIX, Metrics
from controller.model import BundleManifest

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def sample(metrics: Metrics, series: str, **labels: str) -> float | None:
    return metrics.collectors.get_sample_value(PREFIX + series, labels)


def test_hooks_feed_their_metrics() -> None:
    """Each hook moves the metric it names, and only the labels it is given."""
    metrics = Metrics(CollectorRegistry())
    metrics.on_request("PATCH", "409", 0.02)
    metrics.on_event("api_post_event")
    metrics.on_stream_connected(True)
    metrics.on_reconnect()
    queue = metrics.queue("app", unfinished=lambda: 4.0, longest=lambda: 2.5)
    queue.on_retry("/a")
    queue.on_depth(3)
    manifest = BundleManifest(registry="r.example", sha256="0" * 64, format="config.json",
                              created_at=T0, refresh_at=T0 + timedelta(hours=1))
    metrics.on_publish("r.example", "published", manifest)
    assert sample(metrics, "marathon_requests_total", method="PATCH", status="409") == 1
    assert sample(metrics, "marathon_events_total", event_type="api_post_event") == 1
    assert sample(metrics, "marathon_sse_connected") == 1
    assert sample(metrics, "marathon_sse_reconnects_total") == 1
    assert sample(metrics, "workqueue_retries_total", name="app") == 1
    assert sample(metrics, "workqueue_depth", name="app") == 3
    assert sample(metrics, "workqueue_unfinished_work_seconds", name="app") == 4.0
    assert sample(metrics, "workqueue_longest_running_processor_seconds", name="app") == 2.5
    assert sample(metrics, "bundle_publishes_total", registry="r.example",
                  result="published") == 1
    assert sample(metrics, "bundle_last_publish_timestamp_seconds",
                  registry="r.example") == T0.timestamp()


def test_closed_value_sets_start_at_zero() -> None:
    """Every reconcile result and app state is exported before anything happens."""
    metrics = Metrics(CollectorRegistry())
    metrics.init_registries(["r.example"])
    for controller in ("app", "registry"):
        assert sample(metrics, "controller_reconcile_total", controller=controller,
                      result="requeue_after") == 0
        assert sample(metrics, "controller_reconcile_errors_total", controller=controller,
                      kind="timeout") == 0
    assert sample(metrics, "apps_managed", state="conflict") == 0
    assert sample(metrics, "bundle_publishes_total", registry="r.example", result="dry_run") == 0
