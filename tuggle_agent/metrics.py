"""Prometheus metrics at GET /_tuggle/metrics: the numbers that show the cluster feeding itself
(bytes from complete vs partial holders, bytes served to peers, fetch outcomes)."""

from __future__ import annotations

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

REGISTRY = CollectorRegistry()
# The standard collectors every Python exporter has (process_* CPU, memory, open fds, start time;
# python_info; python_gc_*): registered in our registry too, so dashboards built for them work.
for _collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
    REGISTRY.register(_collector)

FETCHED_BYTES = Counter(
    "tuggle_fetched_bytes", "Verified bytes received from peers, by kind of source", ["source"], registry=REGISTRY
)  # source: complete | partial
SERVED_BYTES = Counter(
    "tuggle_served_to_peers_bytes", "Bytes sent to peers (counted against serve_rate)", registry=REGISTRY
)
UPLOADED_BYTES = Counter("tuggle_uploaded_bytes", "Bytes stored by PUT on this node", registry=REGISTRY)
FETCHES = Counter("tuggle_fetches", "Finished fetches by result", ["result"], registry=REGISTRY)
FETCH_SECONDS = Histogram(
    "tuggle_fetch_seconds",
    "Duration of successful fetches",
    registry=REGISTRY,
    buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800),
)
SOURCE_SWITCHES = Counter(
    "tuggle_source_switches", "Fetches resumed from another holder, by reason", ["reason"], registry=REGISTRY
)  # reason: broken | corrupt | slow | sink | reranked (engine/switching.py)
ACTIVE_FETCHES = Gauge("tuggle_active_fetches", "Fetches in progress", registry=REGISTRY)
ORPHANS = Gauge(
    "tuggle_orphans", "Local copies kept unadvertised: Consul KV has no such object and no tombstone", registry=REGISTRY
)
BAD_ENTRIES = Gauge(
    "tuggle_bad_kv_entries", "Keys under the namespace prefix that are not valid metadata", registry=REGISTRY
)
PEERS_REFUSED = Counter(
    "tuggle_peers_refused", "Peer requests answered 503 because max_serving_peers were being served", registry=REGISTRY
)
CORRUPT_COPIES = Counter("tuggle_corrupt_copies", "Local copies found corrupt and removed", registry=REGISTRY)

# Every request, from the access-log middleware (front/accesslog.py). `route` is the route's
# name in front/app.py (object, root, status, ...), never the raw path, and methods outside
# the HTTP verbs we know count as "other": clients cannot add label values at will.
REQUESTS = Counter(
    "tuggle_http_requests",
    "HTTP requests answered, by route, method and status",
    ["route", "method", "status"],
    registry=REGISTRY,
)
REQUEST_SECONDS = Histogram(
    "tuggle_http_request_seconds",
    "Time from request to the end of the response body, by route",
    ["route"],
    registry=REGISTRY,
    buckets=(0.005, 0.025, 0.1, 0.5, 1, 5, 30, 120, 600),
)
HOOK_RUNS = Counter(
    "tuggle_hook_runs", "Hook commands run, by kind and result", ["kind", "result"], registry=REGISTRY
)  # kind: pre_download | post_download | post_delete; result: ok | failed | timeout


def exposition() -> tuple[bytes, str]:
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


DISK_USED = Gauge(
    "tuggle_disk_used_bytes", "Bytes the agent's copies, temp files and admitted fetches take", registry=REGISTRY
)
EVICTIONS = Counter("tuggle_evictions", "Local copies evicted, by reason", ["reason"], registry=REGISTRY)
# reason: watermark | max_age
FETCH_REFUSALS = Counter(
    "tuggle_fetch_refusals", "Downloads refused (507) because the object could not fit", registry=REGISTRY
)
