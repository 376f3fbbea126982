"""``GET /metrics``: the host's figures in Prometheus text format (docs/operations.md, "Metrics and logs").

Open only to addresses in ``METRICS_ALLOW`` (networks; the client address as ProxyFix made it
when ``TRUSTED_PROXIES`` is set) or to a request with ``Authorization: Bearer <METRICS_TOKEN>``;
everyone else gets 403. Counting happens in each process as plain counters
(registry/infra/metrics.py): Flask's routes through :func:`init_app`'s hook, the verify edge in
portal/edge.py. A scrape sums every process of the host, and adds what the database and Redis
know (numbers imported, queue lengths, complaint deadlines), each skipped if its backend is down.
"""
from __future__ import annotations

import datetime as dt
import hmac
import ipaddress
import logging
from pathlib import Path

from flask import Blueprint, Flask, abort, current_app, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from registry.infra.logs import new_request_id, request_id
from registry.infra.metrics import LATENCY_BUCKETS, host_figures

from .extensions import limiter, registry

log = logging.getLogger(__name__)
bp = Blueprint("metrics", __name__)
UNMATCHED = "<unmatched>"  # a path no route matched: never the path itself (unbounded, may carry secrets)


def allowed(remote_addr: str | None, authorization: str, *, networks, token: str) -> bool:
    """A bearer ``token`` (compared in constant time), or an address inside ``networks``."""
    if token:
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
            return True
    try:
        address = ipaddress.ip_address((remote_addr or "").split("%", 1)[0])
    except ValueError:
        return False
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


@bp.get("/metrics")
@limiter.exempt
def metrics():
    config = current_app.config
    if not allowed(request.remote_addr, request.headers.get("Authorization", ""),
                   networks=current_app.extensions["metrics_networks"], token=config["METRICS_TOKEN"]):
        abort(403)
    reg = registry()
    families = CollectorRegistry(auto_describe=False)
    families.register(HostCollector(reg, Path(config["PROMETHEUS_MULTIPROC_DIR"])))
    body = generate_latest(families)
    return body, 200, {"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"}


class HostCollector(Collector):
    """The families of one scrape."""

    def __init__(self, services, directory: Path) -> None:
        self._services = services
        self._directory = directory

    def collect(self):
        reg = self._services
        reg.metrics.write()  # this process's file, for the next scrape that another worker serves
        figures = host_figures(self._directory, reg.metrics)
        requests = CounterMetricFamily("rnr_http_requests", "HTTP requests answered, by route and status",
                                       labels=["route", "status"])
        for (route, status), n in sorted(figures.requests.items()):
            requests.add_metric([route, str(status)], n)
        yield requests
        latency = HistogramMetricFamily("rnr_verify_duration_seconds",
                                        "Time to answer GET /api/v1/verify inside the process")
        cumulative, buckets = 0, []
        for bound, n in zip((*LATENCY_BUCKETS, float("inf")), figures.latency):
            cumulative += n
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
        latency.add_metric([], buckets, sum_value=figures.latency_sum)
        yield latency
        verdicts = CounterMetricFamily("rnr_verdicts", "Verdicts of single verifications, by status", labels=["status"])
        for status, n in sorted(figures.verdicts.items()):
            verdicts.add_metric([status], n)
        yield verdicts
        refusals = CounterMetricFamily("rnr_rate_limit_refusals", "Requests refused by a rate limit or quota (429)",
                                       labels=["route"])
        for route, n in sorted(figures.refusals.items()):
            refusals.add_metric([route], n)
        yield refusals
        yield CounterMetricFamily("rnr_bloom_false_positives", "Bloom index said 'maybe', the database had no row",
                                  value=figures.bloom_false_positives)
        bloom = reg.bloom.status()
        current = "rebuilding" if bloom.get("rebuilding") or reg.rebuilding else (
            "trusted" if bloom.get("mode") == "bloom" else "database")
        mode = GaugeMetricFamily("rnr_bloom_mode", "How this process answers negatives: 1 for the current mode",
                                 labels=["mode"])
        for name in ("trusted", "database", "rebuilding"):
            mode.add_metric([name], 1 if name == current else 0)
        yield mode
        yield GaugeMetricFamily("rnr_query_log_buffer", "Query-log records waiting for the next flush (live processes)",
                                value=figures.query_log_buffer)
        yield CounterMetricFamily("rnr_query_log_dropped", "Query-log records dropped: the buffer was full",
                                  value=figures.query_log_dropped)
        yield CounterMetricFamily("rnr_query_log_rejected", "Query-log records the database refused, dropped alone",
                                  value=figures.query_log_rejected)
        yield GaugeMetricFamily("rnr_processes", "Processes of this host reporting figures", value=figures.processes)
        yield from _guarded("imports", self._imports)
        yield from _guarded("queues", self._queues)
        yield from _guarded("complaint deadlines", self._deadlines)

    def _imports(self):
        total, last_hour = self._services.registration.imported_figures(since=dt.timedelta(hours=1))
        yield CounterMetricFamily("rnr_numbers_imported", "Numbers registered, every batch since the start",
                                  value=total)
        yield GaugeMetricFamily("rnr_import_numbers_per_second", "Numbers registered per second over the last hour",
                                value=last_hour / 3600)

    def _queues(self):
        family = GaugeMetricFamily("rnr_queue_jobs", "Background jobs by queue and state", labels=["queue", "state"])
        for queue, state, n in self._services.jobs.lengths():
            family.add_metric([queue, state], n)
        yield family

    def _deadlines(self):
        due, overdue = self._services.casework.deadline_counts()
        family = GaugeMetricFamily("rnr_complaint_deadlines",
                                   "Open complaints whose deadline is within two working days (due) or past (overdue)",
                                   labels=["state"])
        family.add_metric(["due"], due)
        family.add_metric(["overdue"], overdue)
        yield family


def _guarded(what: str, families):
    """The families of one backend's figures, or none (logged) while it is down."""
    try:
        yield from list(families())
    except Exception as exc:  # noqa: BLE001 - a scrape still answers with what the process knows
        log.warning("metrics: %s left out (%s)", what, exc.__class__.__name__)


def init_app(app: Flask) -> None:
    """The blueprint, the parsed networks, the request id and the per-route counting hook."""
    app.extensions["metrics_networks"] = tuple(ipaddress.ip_network(n) for n in app.config["METRICS_ALLOW"])
    app.register_blueprint(bp)
    counts = app.extensions["registry"].metrics

    @app.before_request
    def _request_id():
        g.request_id_token = request_id.set(new_request_id(request.headers.get("X-Request-ID")))

    @app.after_request
    def _count(response):
        rule = request.url_rule
        route = rule.rule if rule is not None else UNMATCHED
        counts.requests[(route, response.status_code)] += 1
        if response.status_code == 429:
            counts.refusals[route] += 1
        return response

    @app.teardown_request
    def _forget_request_id(_exc=None):
        token = g.pop("request_id_token", None)
        if token is not None:
            request_id.reset(token)
