"""``bench/RESULTS.md`` from one ``python -m bench`` report: the goals of issue 20 and of
issue 12, then every figure."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_NOW = {"noop_all": "1.9-2.2x", "noop_tenth": "—", "startup": "—", "rss_10k": "103 MB",
        "rss_50k": "340 MB", "growth": "6.7x", "first_sync": "1.5 s", "latency": "2.2 ms",
        "ops_healthz": "40 s", "ops_rss": "537 MB"}
"""Issue 12's "before" figures."""
_BEFORE_20 = {"noop_10k": "1.33x", "noop_50k": "1.21x", "rss_10k": "69 MB", "rss_50k": "142 MB",
              "startup": "1.74x", "startup_bare": "1.61x"}
"""Issue 20's "before" figures: the reviewer's, measured from outside (the label on every app,
one in ten opted in; best of 7 interleaved runs), and the start-up of the last RESULTS.md."""


def _find(rows: list[dict[str, Any]], **match: Any) -> dict[str, Any] | None:
    return next((r for r in rows if all(r.get(k) == v for k, v in match.items())), None)


def _of(row: dict[str, Any] | None, key: str) -> float | None:
    """A figure of a row that may not have been measured."""
    return None if row is None else float(row[key])


def _goal(name: str, now: str, bar: float | None, moonshot: float, value: float | None,
          unit: str, fmt: Callable[[float], str], *, missing: str = "not measured") -> str:
    if value is None:
        return (f"| {name} | {now} | {_limit(bar, unit)} | {_limit(moonshot, unit)} | "
                f"{missing} | | |")
    bar_met = "report it" if bar is None else ("**met**" if value <= bar else "not met")
    moon_met = "**met**" if value <= moonshot else "not met"
    return (f"| {name} | {now} | {_limit(bar, unit)} | {_limit(moonshot, unit)} | "
            f"{fmt(value)} | {bar_met} | {moon_met} |")


def _times(value: float | None) -> str:
    return "below noise" if value is None else f"{value:.2f}x"


def _limit(limit: float | None, unit: str) -> str:
    return "report it" if limit is None else f"≤ {limit:g}{unit}"


def _mix(row: dict[str, Any]) -> str:
    """A label mix in words: which apps carry the label, and how many opt in."""
    on = "every app" if row["labelled"] == "all" else "1 app in 10"
    return f"{on}, {row['opted_in']} % opted in"


def _ratio(value: float) -> str:
    return f"{value:.2f}x"


def _mb(value: float) -> str:
    return f"{value:.0f} MB"


def _issue_20(report: dict[str, Any]) -> list[str]:
    noop, rss, s = report["noop"], report["daemon_rss"], report["startup"]
    goal_mix = {"labelled": "all", "opted_in": 10}
    noop_10k, noop_50k = (_find(noop, apps=n, **goal_mix) for n in (10_000, 50_000))
    rss_10k, rss_50k = (_find(rss, apps=n, opted_in=10) for n in (10_000, 50_000))
    return [
        "## Goals (issue 20)",
        "",
        "| measure | before | bar | moonshot | now | bar | moonshot |",
        "|---|---|---|---|---|---|---|",
        _goal("no-op pass above empty / floor, 10k apps, the label on every app, 10 % opted in",
              _BEFORE_20["noop_10k"], 0.75, 0.5, _of(noop_10k, "ratio"), "x", _ratio),
        _goal("the same at 50k apps", _BEFORE_20["noop_50k"], 0.75, 0.5,
              _of(noop_50k, "ratio"), "x", _ratio),
        _goal("daemon peak RSS after the first sync, 10k apps (the same mix)",
              _BEFORE_20["rss_10k"], 80, 60, _of(rss_10k, "peak_rss_mb"), " MB", _mb),
        _goal("daemon peak RSS after the first sync, 50k apps (the same mix)",
              _BEFORE_20["rss_50k"], 150, 100, _of(rss_50k, "peak_rss_mb"), " MB", _mb),
        _goal("start-up: `reconcile --once` on an empty Marathon / `python -c \"import "
              "aiohttp\"` (the test virtualenv: `structlog` imports `rich`)",
              _BEFORE_20["startup"], 1.5, 1.3, s["ratio"], "x", _ratio),
        _goal("the same without `rich`, as the runtime image runs it",
              _BEFORE_20["startup_bare"], 1.5, 1.3, s["without_rich_ratio"], "x", _ratio),
        "",
        "Before: the no-op and RSS figures are those issue 20 reports (measured from outside "
        "with the label on every app and nine apps in ten saying `\"false\"`, best of 7 "
        "interleaved runs); the start-up ones are the last `RESULTS.md`'s. Now: this run.",
        "",
    ]


def render(report: dict[str, Any]) -> str:
    noop, rss = report["noop"], report["daemon_rss"]
    all_10k = _find(noop, apps=10_000, labelled="all", opted_in=10)
    tenth_10k = _find(noop, apps=10_000, labelled="tenth")
    rss_10k, rss_50k = (_find(rss, apps=n, opted_in=10) for n in (10_000, 50_000))
    grown = _find(report["growth"]["mixes"], labelled="all", opted_in=10)
    growth = grown["pass_growth"] if grown else None
    first = report["first_sync"]
    latency = report["latency"].get("event_to_write_ms", {}).get("p99")
    ops = report["ops_load"]
    ratio, mb = _ratio, _mb
    m = report["machine"]
    lines = [
        "# Benchmark results",
        "",
        f"`make bench` on {report['date']}: {m['cpu'] or 'unknown CPU'}, {m['cpus']} CPUs, "
        f"{m['memory_gb']} GB, Python {m['python']}, Linux {m['kernel']}; load average "
        f"{m['load_1m']} at the start, {m.get('load_1m_after')} at the end "
        f"({report['bench_seconds']} s in all).",
        "",
        "Every ratio is measured side by side in this one run, on the same server, by the same "
        f"method; every time is the best of {report['repeat']} runs. The machine is shared "
        "(other work ran beside the benchmark), so absolute times are noisy; the ratios are "
        "what the goals are about.",
        "",
        *_issue_20(report),
        "## Goals (issue 12)",
        "",
        "| measure | before | bar | moonshot | now | bar | moonshot |",
        "|---|---|---|---|---|---|---|",
        _goal("no-op pass at 10k apps, all labelled (10 % opted in), above an empty-Marathon "
              "run / bare GET+`json.loads`", _NOW["noop_all"], 1.0, 0.75,
              _of(all_10k, "ratio"), "x", ratio),
        _goal("the same, 10 % labelled (server-side `label` filter)", _NOW["noop_tenth"], 0.3,
              0.15, _of(tenth_10k, "ratio"), "x", ratio),
        _goal("start-up: `reconcile --once` on an empty Marathon / `python -c \"import "
              "aiohttp\"`", _NOW["startup"], None, 1.5, report["startup"]["ratio"], "x", ratio),
        _goal("daemon peak RSS after first sync, 10k apps (all labelled, 10 % opted in)",
              _NOW["rss_10k"], 80, 60,
              _of(rss_10k, "peak_rss_mb"), " MB", mb),
        _goal("daemon peak RSS after first sync, 50k apps (the same)", _NOW["rss_50k"], 150,
              100,
              _of(rss_50k, "peak_rss_mb"), " MB", mb),
        _goal("no-op pass cost growth, 10k → 50k apps (all labelled, 10 % opted in)",
              _NOW["growth"], 5.5, 5.0, growth, "x", ratio,
              missing="below noise (see the growth table)"),
        _goal(f"first full sync, {first['apps']:,} apps / {first['first_sync']['writes']:,} "
              "writes, write limits lifted", _NOW["first_sync"], None, 1.0,
              first["first_sync"]["seconds"], " s", lambda v: f"{v:.2f} s"),
        _goal(f"event → write latency p99 at {report['latency']['apps']:,} apps (loopback)",
              _NOW["latency"], 10, 5, latency, " ms", lambda v: f"{v:.1f} ms"),
        _goal(f"`/healthz` p99 while {ops['clients']} clients loop `/status` and `/` at "
              f"{ops['apps']:,} apps", _NOW["ops_healthz"], 100, 100, ops["healthz_ms"]["p99"],
              " ms", lambda v: f"{v:.1f} ms"),
        _goal("the daemon's RSS growth meanwhile", _NOW["ops_rss"], 30, 30,
              ops["rss_growth_mb"], " MB", lambda v: f"{v:.1f} MB"),
        "",
        "## No-op `reconcile --once` passes",
        "",
        "`above empty` is the pass's time less the same command against an empty Marathon; "
        "the floor is one unfiltered `GET /v2/apps` of every app plus `json.loads`, with "
        "aiohttp, on a new connection to the same server; the ratio is the one divided by the "
        "other. The three are run in turn, each the best of its runs. Every opted-in app "
        "already fetches its bundle, so every pass is a no-op; with the label on every app, "
        "the server-side `label` filter keeps them all.",
        "",
        "| apps | the opt-in label | list | floor | pass | empty Marathon | above empty | "
        "ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [f"| {r['apps']:,} | {_mix(r)} | {r['list_mb']} MB | {r['floor_s']:.3f} s | "
              f"{r['pass_s']:.3f} s | {r['empty_s']:.3f} s | {r['above_empty_s']:.3f} s | "
              f"{r['ratio']:.2f}x |" for r in noop]
    g = report["growth"]
    lines += ["", f"### Cost growth, {g['from']:,} → {g['to']:,} apps", "",
              "\"Below noise\": the pass at the smaller size costs less above the empty run than "
              "the empty-Marathon figure itself moves between the cases of this run "
              f"({g['noise_s']} s), so a quotient would compare two noises. The pass's ratio to "
              "the floor at both sizes says how it grows next to reading the list.", "",
              "| the opt-in label | no-op pass (above empty) | floor | pass / floor |",
              "|---|---|---|---|"]
    lines += [f"| {_mix(r)} | {_times(r['pass_growth'])} | {_times(r['floor_growth'])} | "
              f"{r['to_floor'][0]:.2f}x → {r['to_floor'][1]:.2f}x |" for r in g["mixes"]]
    s = report["startup"]
    lines += ["", "## Start-up", "",
              f"`reconcile --once` against an empty Marathon: {s['reconcile_once_empty_s']} s; "
              f"`python -c \"import aiohttp\"`: {s['import_aiohttp_s']} s; ratio "
              f"{s['ratio']:.2f}x. Without `rich` (as in the runtime image: only the test "
              "virtualenv has it, for import-linter, and `structlog` imports it when present): "
              f"{s['without_rich_s']} s, ratio {s['without_rich_ratio']:.2f}x. The three are run "
              f"in turn {s['runs']} times, each the best of its runs, with the controller's "
              "bytecode compiled first, as an installed package has it.",
              "", "## Daemon peak RSS after the first sync", "",
              "`pullsecret-controller run` as its own process, the label on every app (the "
              "filter keeps every app); `VmHWM` from `/proc/<pid>/status` once `/readyz` "
              "answers 200.", "",
              "| apps | opted in | peak RSS | ready after |", "|---|---|---|---|"]
    lines += [f"| {r['apps']:,} | {r['opted_in'] if r['apps'] else '—'} % | "
              f"{r['peak_rss_mb']} MB | {r['ready_after_s']} s |" for r in rss]
    lines += ["", "## Compressed lists", "",
              "`MarathonClient.list_apps` (all labelled; it asks for `Accept-Encoding: gzip`) "
              "from a server that sends the list as it is (plain) and from one that gzips it, "
              "straight on loopback and through a 1 Gbit/s token-bucket proxy "
              "(`bench/proxy.py`). The stub compresses once at start-up, so Marathon's own "
              "compression time is not in these figures.", "",
              "| apps | list | gzipped | loopback plain | loopback gzip | 1 Gbit/s plain | "
              "1 Gbit/s gzip |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['apps']:,} | {r['list_mb']} MB | {r['gzipped_mb']} MB | "
              f"{r['loopback_identity_s']:.3f} s | {r['loopback_gzip_s']:.3f} s | "
              f"{r['1gbit_identity_s']:.3f} s | {r['1gbit_gzip_s']:.3f} s |"
              for r in report["gzip"]]
    h = report["holders"]
    lines += ["", f"## Memory holders ({h['apps']:,} apps, the label on every app, 10 % opted "
              "in, `tracemalloc`)", "",
              f"One term's first relist in its own process: traced peak {h['traced_peak_mb']} MB; "
              f"{h['decoded'].get('held_mb')} MB held once the list of "
              f"{h['decoded'].get('apps', 0):,} apps is decoded; "
              f"{h['after_relist']['held_mb']} MB held after the relist "
              f"({h['after_relist']['queued']} apps left for the workers). The list is decoded "
              "as it comes, a MiB at a time: what `applist.py` holds is the typed decoder's "
              "structs and their strings (the raw answer is never held whole, and a listed app "
              "that needs nothing never becomes a dict). What the table does not show is the "
              "process's own memory (the daemon's RSS against an empty Marathon, above).", "",
              "| when | where | MB | blocks |", "|---|---|---|---|"]
    for when, rows in (("list decoded", h["decoded"].get("top", [])),
                       ("after the relist", h["after_relist"]["top"])):
        lines += [f"| {when} | `{r['where']}` | {r['mb']} | {r['blocks']:,} |" for r in rows]
    lat = report["latency"]
    created = lat.get("event_to_write_ms", {})
    each_p99 = ", ".join(f"{v} ms" for v in created.get("rounds_p99", []))
    lines += ["", "## The daemon against the simulator", "",
              "The daemon in the benchmark's process, the simulator in its own; write limits "
              f"lifted. The latency is the best of {len(created.get('rounds_p99', []))} rounds "
              f"of {created.get('creations', 0)} app creations (each round's p99: "
              f"{each_p99 or '—'}).", "",
              "| apps | first full sync | writes | no-op resync | event → write p50 | p99 |",
              "|---|---|---|---|---|---|"]
    for r in (first, lat):
        e = r.get("event_to_write_ms", {})
        lines.append(f"| {r['apps']:,} | {r['first_sync']['seconds']:.2f} s | "
                     f"{r['first_sync']['writes']:,} | {r['noop_resync']['seconds']:.3f} s "
                     f"({r['noop_resync']['writes']} writes) | {e.get('p50', '—')} ms | "
                     f"{e.get('p99', '—')} ms |")
    lines += ["", "## The ops port under load", "",
              f"`pullsecret-controller run` as its own process at {ops['apps']:,} apps (the "
              f"list stub, all labelled); {ops['clients']} clients (`bench/opsload.py`, their own "
              "process) loop `GET /status` and `GET /`, half each, reading whole answers, while "
              "the benchmark asks `/healthz` on a new connection every 50 ms, as a liveness "
              "probe does. RSS is the daemon's `VmRSS` every 0.25 s, against what it held "
              "after its first two status answers.", "",
              "| apps | clients | seconds | answers | answers/s | read | `/healthz` p50 | p99 | "
              "max | RSS before | RSS growth |", "|---|---|---|---|---|---|---|---|---|---|---|",
              f"| {ops['apps']:,} | {ops['clients']} | {ops['seconds']} | "
              + ", ".join(f"{n:,} x {status}" for status, n in sorted(ops["answers"].items()))
              + f" | {ops['answers_per_second']} | {ops['mb_read']} MB | "
              f"{ops['healthz_ms']['p50']} ms | {ops['healthz_ms']['p99']} ms | "
              f"{ops['healthz_ms']['max']} ms | {ops['rss_before_mb']} MB | "
              f"{ops['rss_growth_mb']} MB |"]
    sse, failing = report["sse_ingest"], report["sse_ingest_with_failures"]
    lines += ["", "## SSE ingest", "",
              "| stream | events | decoder | whole watcher |", "|---|---|---|---|",
              f"| 95 % `status_update_event` of running tasks | {sse['events']:,} | "
              f"{sse['decoder_events_per_second']:,} events/s | "
              f"{sse['watcher_events_per_second']:,} events/s |",
              f"| the same with 5 % failed pulls, 2.5 % other failures | {failing['events']:,} | "
              f"{failing['decoder_events_per_second']:,} events/s | "
              f"{failing['watcher_events_per_second']:,} events/s "
              f"({failing['failed_pulls_seen']:,} failed pulls seen) |", ""]
    return "\n".join(lines)
