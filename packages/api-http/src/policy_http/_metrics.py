"""Prometheus metrics of the HTTP API, every name prefixed `llm_policy_`.

Each app owns its registry (several apps in one process, as in tests, do not
collide). Label children are looked up once and kept, so the hot path costs a
dict lookup and an increment. Values that live elsewhere (the loaded policy
set, the decision-log queue) are read at scrape time by a collector; so is
readiness, which the /metrics route checks (as /ready does) before rendering.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
)
from prometheus_client.registry import Collector

__all__ = ["Metrics"]

_LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)


class _Snapshot(Collector):
    """Reads gauges from a callable at scrape time."""

    def __init__(self, read: Callable[[], Mapping[str, Any]]) -> None:
        self._read = read

    def collect(self) -> Iterable[Any]:
        values = self._read()
        policy_set = str(values.get("policy_set", ""))
        info = InfoMetricFamily("llm_policy_policy_set", "The policy set currently enforced.")
        info.add_metric([], {"policy_set": policy_set})
        yield info
        for name, doc in (
            ("policies_loaded", "Number of policies compiled in the engine."),
            ("policy_set_version", "Increments each time the enforced policy set changes."),
            ("decision_log_queue_depth", "Decision records queued, not yet stored."),
            ("decision_log_spool_bytes", "Size of the decision-log spool file (store down)."),
            (
                "decision_log_spool_oldest_age_seconds",
                "Age of the oldest decision record waiting in the spool (0: the spool is empty).",
            ),
        ):
            if name in values:
                yield GaugeMetricFamily(f"llm_policy_{name}", doc, value=float(values[name]))
        records = values.get("decision_log_records")
        if records:
            family = CounterMetricFamily(
                "llm_policy_decision_log_records",
                "Decision records by fate (appended, written, spooled, dropped, ...).",
                labels=["state"],
            )
            for state, count in records.items():
                family.add_metric([state], float(count))
            yield family
        outboxes = values.get("outboxes")
        if outboxes:
            depth = GaugeMetricFamily(
                "llm_policy_outbox_depth",
                "Events waiting in a sink's durable outbox (memory and disk).",
                labels=["sink"],
            )
            age = GaugeMetricFamily(
                "llm_policy_outbox_oldest_age_seconds",
                "Age of the oldest event waiting in a sink's outbox (0: empty).",
                labels=["sink"],
            )
            delivered = CounterMetricFamily(
                "llm_policy_outbox_delivered",
                "Delivery attempts of a sink's outbox by outcome (ok, error, timeout, "
                "breaker_open, rejected).",
                labels=["sink", "outcome"],
            )
            for status in outboxes:
                depth.add_metric([status.sink], float(status.depth))
                age.add_metric([status.sink], float(status.oldest_age_seconds))
                for outcome, count in sorted(status.delivered.items()):
                    delivered.add_metric([status.sink, outcome], float(count))
            yield depth
            yield age
            yield delivered


class _Integrations(Collector):
    """The integration calls (policy_core.integrations.CallStats), read at scrape time."""

    def __init__(self, read: Callable[[], Any]) -> None:
        self._read = read

    def collect(self) -> Iterable[Any]:
        from policy_core.integrations import BREAKER_CODES, CALL_BUCKETS

        stats = self._read()
        if stats is None:
            return
        calls = CounterMetricFamily(
            "llm_policy_integration_calls",
            "Integration calls by integration, call and outcome "
            "(ok, error, timeout, breaker_open, invalid).",
            labels=["integration", "call", "outcome"],
        )
        for (integration, call, outcome), count in sorted(stats.calls.items()):
            calls.add_metric([integration, call, outcome], float(count))
        yield calls
        seconds = HistogramMetricFamily(
            "llm_policy_integration_call_seconds",
            "Integration call latency by integration and call (breaker refusals included).",
            labels=["integration", "call"],
        )
        for (integration, call), (counts, total) in sorted(stats.latency.items()):
            running, buckets = 0, []
            for bound, count in zip((*CALL_BUCKETS, float("inf")), counts, strict=True):
                running += count
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), running))
            seconds.add_metric([integration, call], buckets, total[0])
        yield seconds
        breaker = GaugeMetricFamily(
            "llm_policy_integration_breaker_state",
            "Circuit breaker of each integration: 0 closed, 1 half-open, 2 open.",
            labels=["integration"],
        )
        for integration, state in sorted(stats.breakers.items()):
            breaker.add_metric([integration], float(BREAKER_CODES[state]))
        yield breaker


class _Readiness(Collector):
    """`llm_policy_ready`: the last readiness check of this process (1 ready, 0 not)."""

    def __init__(self) -> None:
        self.ready = False

    def collect(self) -> Iterable[Any]:
        yield GaugeMetricFamily(
            "llm_policy_ready",
            "1 when this replica is ready (the checks of /ready pass), 0 when not.",
            value=1.0 if self.ready else 0.0,
        )


class Metrics:
    """The API's metrics and the cached label children used on the hot path."""

    def __init__(
        self,
        snapshot: Callable[[], Mapping[str, Any]] | None = None,
        *,
        multiprocess_dir: str | None = None,
        integrations: Callable[[], Any] | None = None,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._exposed = self.registry
        if multiprocess_dir:
            # Several workers: counters live in files under the directory (prometheus_client
            # multiprocess mode); a scrape sums every worker's files.
            from prometheus_client import multiprocess

            self._exposed = CollectorRegistry()
            multiprocess.MultiProcessCollector(  # type: ignore[no-untyped-call]
                self._exposed, path=multiprocess_dir
            )
        r = self.registry
        self.requests = Counter(
            "llm_policy_http_requests",
            "HTTP requests by route template, method and status.",
            ["route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "llm_policy_http_request_duration_seconds",
            "HTTP request latency by route template and method.",
            ["route", "method"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.decisions = Counter(
            "llm_policy_decisions", "Decisions by outcome.", ["decision"], registry=r
        )
        self.policy_matches = Counter(
            "llm_policy_policy_decisions",
            "Decisions in which a policy matched, by policy and outcome.",
            ["policy", "decision"],
            registry=r,
        )
        self.cache = Counter(
            "llm_policy_decision_cache",
            "Decision cache lookups by result (hit or miss).",
            ["result"],
            registry=r,
        )
        self.rate_limited = Counter(
            "llm_policy_rate_limited",
            "Requests refused by a rate limit, by route class.",
            ["route_class"],
            registry=r,
        )
        self.auth_failures = Counter(
            "llm_policy_auth_failures",
            "Requests refused by authentication (401) or authorisation (403).",
            ["status"],
            registry=r,
        )
        self.evaluation_errors = Counter(
            "llm_policy_evaluation_errors",
            "Rule errors recorded in the decisions evaluated (spec 5.4), by policy.",
            ["policy"],
            registry=r,
        )
        self._readiness = _Readiness()
        self._exposed.register(self._readiness)
        if snapshot is not None:
            self._exposed.register(_Snapshot(snapshot))
        if integrations is not None:
            self._exposed.register(_Integrations(integrations))
        self._req_children: dict[tuple[str, str, int], Any] = {}
        self._lat_children: dict[tuple[str, str], Any] = {}
        self._decision_children: dict[str, Any] = {}
        self._match_children: dict[tuple[str, str], Any] = {}
        self._error_children: dict[str, Any] = {}
        self._cache_hit = self.cache.labels("hit")
        self._cache_miss = self.cache.labels("miss")

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        child = self._req_children.get(key)
        if child is None:
            child = self._req_children[key] = self.requests.labels(route, method, str(status))
        child.inc()
        lkey = (route, method)
        lat = self._lat_children.get(lkey)
        if lat is None:
            lat = self._lat_children[lkey] = self.latency.labels(route, method)
        lat.observe(seconds)

    def observe_decision(
        self,
        decision: str,
        policies: Iterable[str],
        cached: bool,
        count: int = 1,
        errors: Iterable[str] = (),
    ) -> None:
        """Count `count` decisions alike (a batch counts each distinct outcome once).

        `errors`: the policy of each rule error recorded in the decision. A cached
        decision evaluated nothing, so its recorded errors are not counted again.
        """
        child = self._decision_children.get(decision)
        if child is None:
            child = self._decision_children[decision] = self.decisions.labels(decision)
        child.inc(count)
        for policy in policies:
            key = (policy, decision)
            match = self._match_children.get(key)
            if match is None:
                match = self._match_children[key] = self.policy_matches.labels(policy, decision)
            match.inc(count)
        (self._cache_hit if cached else self._cache_miss).inc(count)
        if cached:
            return
        for policy in errors:
            failed = self._error_children.get(policy)
            if failed is None:
                failed = self._error_children[policy] = self.evaluation_errors.labels(policy)
            failed.inc(count)

    def render(self, *, ready: bool = False) -> bytes:
        """The Prometheus text exposition of this registry; `ready` is `llm_policy_ready`."""
        self._readiness.ready = ready
        return generate_latest(self._exposed)
