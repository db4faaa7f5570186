"""The ports of the core: what the services need from the outside world.

Every port is a `typing.Protocol`, split by capability (a reader is not a
writer); adapters conform structurally. The records that cross the ports are
frozen msgspec Structs defined here so that adapters import one module.
Edge semantics (missing keys, ordering, idempotency) are stated in each
docstring; `policy_core.testing` holds the contract suites that check them.

Times are timezone-aware UTC `datetime`s. Cursors are opaque strings that an
adapter produces and accepts back; a caller must not build them, and a
malformed one raises ValueError (the APIs answer 400).
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Generic, Literal, Protocol, TypeAlias, TypeVar, runtime_checkable

import msgspec

from policy_core.model import Decision, FactRequest, Reservation

__all__ = [
    "ApiKeyRecord",
    "ApiKeyStore",
    "Authenticator",
    "BreakerState",
    "BudgetCheck",
    "CallerIds",
    "ChainLink",
    "ChangeFeed",
    "Clock",
    "ComplianceChecker",
    "ComplianceReport",
    "ComplianceViolation",
    "CostOpsBudget",
    "DecisionCache",
    "DecisionChainSource",
    "DecisionHistory",
    "DecisionLog",
    "DecisionLogCounters",
    "DecisionRecord",
    "DecisionStats",
    "EdgePublisher",
    "FactRequest",
    "GovernanceModels",
    "GovernanceSink",
    "HistoryQuery",
    "IntegrationName",
    "IntegrationProbe",
    "IntegrationState",
    "NewRevision",
    "OutboxStatus",
    "Page",
    "PolicyChange",
    "PolicyReader",
    "PolicyRecord",
    "PolicyResource",
    "PolicyStore",
    "PolicyWriter",
    "Principal",
    "RateDecision",
    "RateGranularity",
    "RateLimit",
    "RateLimiter",
    "Reservation",
    "RevisionInfo",
    "ShieldScanner",
    "ShieldThreat",
    "ShieldVerdict",
    "Unsubscribe",
    "UsageEvent",
    "UsageSink",
    "UsageStore",
]

T = TypeVar("T")

PolicyStatusName: TypeAlias = Literal["active", "draft", "deprecated"]
RateGranularity: TypeAlias = Literal["second", "minute", "hour", "day", "month", "year"]


# --- records ------------------------------------------------------------------


class Page(msgspec.Struct, Generic[T], frozen=True, kw_only=True):
    """One page of a listing; `next_cursor` is None on the last page."""

    items: tuple[T, ...]
    next_cursor: str | None = None


class PolicyRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One revision of a stored policy (the current one unless asked otherwise).

    `document` is the policy as JSON (what the loader read), `text` the
    document exactly as submitted (YAML or JSON). `created_at` is when the id
    was first created, `updated_at` when this revision was written.
    """

    id: str
    namespace: str
    revision: int
    status: PolicyStatusName
    document: dict[str, Any]
    text: str
    hash: str
    author: str | None = None
    tags: tuple[str, ...] = ()
    created_at: datetime
    updated_at: datetime
    deleted: bool = False


class PolicyResource(msgspec.Struct, frozen=True, kw_only=True):
    """A stored policy at one revision; `document` is the policy as JSON."""

    id: str
    namespace: str
    revision: int
    status: PolicyStatusName
    document: dict[str, Any]
    hash: str
    author: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, record: PolicyRecord) -> PolicyResource:
        """What the APIs and the CLI show of a stored revision (its text stays inside).

        The one place that decides the resource's fields (those declared above,
        taken from the record): the HTTP API returns it, the CLI prints `json()`,
        the gRPC `Policy` message is filled from `json()` (plus its etag).
        """
        shown = {name: getattr(record, name) for name in cls.__struct_fields__}
        shown["created_at"] = record.created_at.astimezone(UTC)
        shown["updated_at"] = record.updated_at.astimezone(UTC)
        return cls(**shown)

    def json(self) -> dict[str, Any]:
        """The resource as JSON-compatible builtins; times as RFC 3339 UTC (`...Z`)."""
        plain: dict[str, Any] = msgspec.to_builtins(self)
        return plain


class RevisionInfo(msgspec.Struct, frozen=True, kw_only=True):
    """An entry of a policy's history: who wrote which revision when, and what changed."""

    revision: int
    author: str | None
    created_at: datetime
    hash: str
    summary: str


class NewRevision(msgspec.Struct, frozen=True, kw_only=True):
    """What a writer stores as the next revision of a policy (already validated)."""

    id: str
    namespace: str
    status: PolicyStatusName
    document: dict[str, Any]
    text: str
    hash: str
    tags: tuple[str, ...] = ()
    author: str | None = None
    summary: str = ""


class ChainLink(msgspec.Struct, frozen=True, kw_only=True):
    """A decision record's place in its writer's hash chain (the tamper-evident log).

    A writer is one decision log instance (one per process or worker) and
    `writer` its id, unique per start ("<host>:<pid>:<random>"). `seq` counts
    the writer's records from 1 without gaps; `prev` is the previous record's
    `hash` (`GENESIS` for seq 1); `hash` is "sha256:<hex>" of the record's
    canonical encoding with `writer`, `seq` and `prev`
    (`policy_core.services.decision_chain.record_hash`).
    """

    writer: str
    seq: int
    prev: str
    hash: str


class DecisionRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One audit record of the decision log.

    `context` has the decision's `redact` obligations already applied;
    `context_digest` is "sha256:<hex>" of the canonical JSON of the context
    as received (before redaction), so a caller can prove which context it sent.
    It may be "" when appended (the evaluation leaves it to the log's writer);
    a log fills it in with `policy_core.services.with_digest` before it stores
    or returns the record.
    `detail` is the full decision (shadow and obligations included).
    `chain` is None when appended; the log's writer links the record into its
    chain before it stores it (None on records stored before chains existed).
    """

    request_id: str
    policy_set: str
    decision: str
    matched_policies: tuple[str, ...] = ()
    matched_rules: tuple[str, ...] = ()
    reason: str | None = None
    context_digest: str
    context: dict[str, Any]
    detail: Decision
    latency_ms: float
    created_at: datetime
    chain: ChainLink | None = None


class HistoryQuery(msgspec.Struct, frozen=True, kw_only=True):
    """Filters of `DecisionHistory.history`; every given filter must hold.

    `policy_id` selects decisions in which that policy matched; `since` is
    inclusive and `until` exclusive. `shadow_differs` keeps only decisions
    whose shadow (the draft policies' verdict) is a different decision.
    """

    request_id: str | None = None
    policy_id: str | None = None
    decision: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    shadow_differs: bool = False


class DecisionStats(msgspec.Struct, frozen=True, kw_only=True):
    """Aggregates over a time window of the decision log.

    `latency_ms` holds the percentiles "p50", "p95" and "p99" (absent when
    the window is empty); counts are by decision, matched policy and rule.
    """

    total: int
    by_decision: dict[str, int]
    by_policy: dict[str, int]
    by_rule: dict[str, int]
    latency_ms: dict[str, float]
    since: datetime
    until: datetime


class DecisionLogCounters(msgspec.Struct, frozen=True, kw_only=True):
    """A snapshot of a decision log's counters since it started (for /metrics).

    `appended`: records handed to `append` (duplicates included); `written`:
    records stored; `spooled` / `replayed`: batches' records written to the
    spool file while the store was down / moved from it into the store;
    `backpressure`: records that found the queue full and went straight to the
    spool; `dropped`: records lost (a bounded memory log evicting its oldest,
    or a spool that cannot be written); `rejected`: records the store refused
    as invalid; `queued`: records waiting to be written; `spool_bytes`: size of
    the spool file; `spool_oldest`: `created_at` of the oldest record in the
    spool (None when it is empty); `available`: the store answered the last write;
    `outages`: times it stopped answering; `corrupt_spool_lines`: spool lines
    torn by a crash mid-write, unreadable at replay. A log without a queue or
    a spool reports 0 for those.
    """

    appended: int = 0
    written: int = 0
    spooled: int = 0
    replayed: int = 0
    backpressure: int = 0
    dropped: int = 0
    rejected: int = 0
    queued: int = 0
    spool_bytes: int = 0
    spool_oldest: datetime | None = None
    available: bool = True
    outages: int = 0
    corrupt_spool_lines: int = 0


class RateLimit(msgspec.Struct, frozen=True):
    """At most `amount` requests per `multiples` x `granularity` (`5000/second`, `100/5 minutes`)."""

    amount: int
    multiples: int
    granularity: RateGranularity

    @property
    def seconds(self) -> int:
        """The window's length (a month is 30 days, a year 360, as in the `limits` library)."""
        return self.multiples * _GRANULARITY_SECONDS[self.granularity]

    def __str__(self) -> str:
        return f"{self.amount}/{self.multiples} {self.granularity}"


_GRANULARITY_SECONDS = {
    "second": 1,
    "minute": 60,
    "hour": 3600,
    "day": 86_400,
    "month": 30 * 86_400,
    "year": 360 * 86_400,
}


class RateDecision(msgspec.Struct, frozen=True):
    """A refused request: which limit, what remains of its window, and when it resets."""

    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int


class ApiKeyRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A service API key as stored: never the key itself, only its prefix and hash."""

    id: str
    name: str
    prefix: str
    key_hash: str
    roles: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None = None


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """An authenticated caller.

    `id` is the JWT's `sub`, or `apikey:<key id>` for an API key (so that a
    token subject can never share a key's rate-limit bucket or authorship).
    `permissions` is what `roles` grant (policy_core.access).
    """

    id: str
    roles: tuple[str, ...]
    permissions: frozenset[str]
    kind: Literal["jwt", "api_key", "anonymous"]

    def can(self, permission: str) -> bool:
        return permission in self.permissions


class PolicyChange(msgspec.Struct, frozen=True, kw_only=True):
    """A notification that a policy changed; `origin` names the instance that wrote it."""

    policy_id: str
    revision: int
    kind: Literal["created", "updated", "status", "deleted", "rollback"]
    origin: str = ""


# --- policy store ---------------------------------------------------------------


@runtime_checkable
class PolicyReader(Protocol):
    """Reads stored policies and their history."""

    async def get(self, policy_id: str, revision: int | None = None) -> PolicyRecord:
        """The current revision, or revision `revision`.

        Raises PolicyNotFound when the id never existed or is deleted (a
        specific `revision` of a deleted policy is still returned: revisions
        are kept for audit), RevisionNotFound when that revision does not exist.
        """
        ...

    async def list(
        self,
        *,
        namespace: str | None = None,
        status: str | None = None,
        tag: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[PolicyRecord]:
        """Current revisions of live (not deleted) policies, ordered by id.

        Filters combine with AND; `tag` matches one of `metadata.tags`. A
        cursor stays valid when policies are added or removed meanwhile.
        """
        ...

    async def load_all(self) -> builtins.list[PolicyRecord]:
        """Every live policy's current revision, every status, ordered by id (for compiling)."""
        ...

    async def revisions(
        self, policy_id: str, *, limit: int = 50, cursor: str | None = None
    ) -> Page[RevisionInfo]:
        """The history of an id, oldest first, deleted policies included.

        Raises PolicyNotFound when the id has no revision at all.
        """
        ...


@runtime_checkable
class PolicyWriter(Protocol):
    """Writes immutable revisions. Revision numbers of an id are 1, 2, 3... with no gap."""

    async def create(self, revision: NewRevision) -> PolicyRecord:
        """Store the first revision of a new id.

        Raises PolicyAlreadyExists when a live policy has that id. A deleted id
        may be created again: its revision numbers continue after the last one.
        """
        ...

    async def update(self, revision: NewRevision, expected_revision: int) -> PolicyRecord:
        """Store the next revision if the current one is `expected_revision`.

        Atomic compare-and-set: of concurrent updates with the same expected
        revision exactly one succeeds; the others raise RevisionConflict.
        Raises PolicyNotFound for an unknown or deleted id.
        """
        ...

    async def delete(
        self, policy_id: str, *, author: str | None = None, expected_revision: int | None = None
    ) -> None:
        """Soft-delete: the policy leaves listings and reads, its revisions stay.

        Raises PolicyNotFound when no live policy has that id (so a second
        delete reports it), RevisionConflict when `expected_revision` is stale.
        """
        ...


class PolicyStore(PolicyReader, PolicyWriter, Protocol):
    """A store that both reads and writes policies (what adapters usually provide)."""


# --- decisions --------------------------------------------------------------------


@runtime_checkable
class DecisionLog(Protocol):
    """The audit trail of decisions, write side (the evaluation appends to it)."""

    def append(self, record: DecisionRecord) -> None:
        """Queue one record; never blocks on storage and never raises for a storage fault.

        Appending a request_id already stored is a no-op (replays are idempotent).
        """
        ...

    async def flush(self) -> None:
        """Return once every record appended before the call is durable (stored or spooled)."""
        ...

    def counters(self) -> DecisionLogCounters:
        """What the log has done since it started; cheap (no I/O), for /metrics."""
        ...


@runtime_checkable
class DecisionChainSource(Protocol):
    """The stored records in chain order, for `llm-policy evaluate verify`."""

    async def chain_size(self) -> int:
        """How many records are stored (chained or not; for a progress bar)."""
        ...

    def chain_records(self, *, batch_size: int = 1000) -> AsyncIterator[DecisionRecord]:
        """Every stored record by (chain writer, seq); records without a chain last.

        A skipped duplicate (an appended request_id already stored) keeps its
        link too, so that a writer's chain has no gap.
        """
        ...


@runtime_checkable
class DecisionHistory(Protocol):
    """The audit trail of decisions, read side (history and statistics for the APIs)."""

    async def history(
        self, query: HistoryQuery, *, limit: int = 50, cursor: str | None = None
    ) -> Page[DecisionRecord]:
        """Stored records matching `query`, newest first (ties by request_id)."""
        ...

    async def stats(self, since: datetime, until: datetime) -> DecisionStats:
        """Counts and latency percentiles of the records in [since, until)."""
        ...


@runtime_checkable
class RateLimiter(Protocol):
    """Request rate limits per route class and caller: what makes the APIs answer 429.

    The limits themselves are the implementation's (the composition root
    builds it from the deployment's settings); the API only counts requests.
    """

    async def hit(self, route_class: str, identity: str) -> RateDecision | None:
        """Count one request of `identity` against `route_class`'s limits.

        None when it is allowed (or the class is not limited); the refusal,
        for the first limit it exceeds, otherwise. Allowed requests cost one
        counter update per limit of the class and nothing more. Raises
        StoreUnavailable when shared counters cannot be reached.
        """
        ...

    async def ping(self) -> bool:
        """True when the counters answer (always, for counters in memory)."""
        ...


@runtime_checkable
class DecisionCache(Protocol):
    """Caches decisions by key (the key already includes the policy set)."""

    async def get(self, key: str) -> Decision | None:
        """The cached decision, or None when absent or expired."""
        ...

    async def set(self, key: str, decision: Decision, ttl_seconds: int) -> None:
        """Cache for `ttl_seconds` (> 0), replacing any previous value; may evict others."""
        ...

    async def clear(self) -> None:
        """Drop every entry."""
        ...


# --- usage ----------------------------------------------------------------------


@runtime_checkable
class UsageStore(Protocol):
    """Counters behind the stateful facts `rate_limit.count` and `budget.spent`.

    Exact under concurrency: every `fetch` reads, records and reserves as one
    atomic step (in one round trip for a shared store), so concurrent callers
    (workers, replicas) never see the same count twice or overshoot a budget.
    """

    async def fetch(
        self,
        requests: Sequence[FactRequest],
        *,
        record: bool = True,
        reserve: Reservation | None = None,
    ) -> dict[FactRequest, Any]:
        """Values of the given facts, in one round trip.

        `("rate_limit.count", key, window)` is the number of requests for `key`
        in the sliding window ('1s', '1m', '1h', '1d'), this one included: with
        `record=True` the request is recorded once per distinct key (even when
        several windows or references ask for it); with `record=False` (dry-run)
        nothing is recorded and the value still includes this request.
        `("budget.spent", key, period)` is USD spent in the current UTC 'day' or
        'month': settled spend plus the open (unexpired) reservations of `key`.
        Unknown kinds are left out of the result.

        `reserve` (only with `record=True`): atomically with the reads, hold
        `reserve.amount` on each of `reserve.keys` until `reserve.expires_at`.
        The budget values returned are those before this reservation.
        """
        ...

    async def record_spend(self, key: str, usd: float, at: datetime | None = None) -> None:
        """Add spend for `key` at time `at` (now when None); `usd` must be >= 0."""
        ...

    async def settle(self, reservation_id: str, usd: float) -> tuple[str, ...] | None:
        """Replace a reservation by the actual spend `usd` (>= 0), recorded now on its keys.

        Answers the keys charged, or None when the reservation is unknown or
        already settled or released. A reservation past its expiry no longer
        counts, but is still settled for a day after it expired, so that a
        late settlement records the spend.
        """
        ...

    async def release(self, reservation_id: str) -> bool:
        """Drop an open reservation without charging anything; False when unknown."""
        ...


# --- API keys -------------------------------------------------------------------


@runtime_checkable
class ApiKeyStore(Protocol):
    """Stored service API keys (hashed)."""

    async def create(self, record: ApiKeyRecord) -> None:
        """Store a new key. Raises ValueError when its id or prefix is taken."""
        ...

    async def get_by_prefix(self, prefix: str) -> ApiKeyRecord | None:
        """The key with this prefix (revoked ones included), or None."""
        ...

    async def list(self, *, include_revoked: bool = False) -> builtins.list[ApiKeyRecord]:
        """Keys ordered by creation time."""
        ...

    async def revoke(self, key_id: str, at: datetime) -> bool:
        """Mark revoked; False when the id is unknown (revoking twice keeps the first time)."""
        ...


# --- change feed ----------------------------------------------------------------

Unsubscribe: TypeAlias = Callable[[], Awaitable[None]]


@runtime_checkable
class Authenticator(Protocol):
    """Who is calling: one verifier of bearer tokens and API keys for every API.

    The APIs only extract the two credentials from their transport (HTTP
    headers, gRPC metadata) and map the outcome: AuthError to 401 /
    UNAUTHENTICATED, a missing permission to 403 / PERMISSION_DENIED.
    """

    async def authenticate(self, authorization: str | None, api_key: str | None) -> Principal:
        """The caller, from the `Authorization` and `X-API-Key` values (None when absent).

        A present `Authorization` wins over an API key and must read
        `Bearer <JWT>`. Raises policy_core.errors.AuthError when the
        credentials are missing, malformed, unknown, expired or refused.
        """
        ...

    def forget_api_key(self, key_id: str) -> None:
        """Drop what is remembered of a key revoked through this instance (refused at once)."""
        ...


class ChangeFeed(Protocol):
    """Tells every instance that policies changed, so that it reloads."""

    async def publish(self, change: PolicyChange) -> None:
        """Deliver to every current subscriber (the publisher's own ones included)."""
        ...

    async def subscribe(self, handler: Callable[[PolicyChange], Awaitable[None]]) -> Unsubscribe:
        """Call `handler` for each change published from now on; returns an unsubscribe.

        Delivery is at most once and in publish order per publisher; a handler
        that raises does not stop later deliveries.
        """
        ...


# --- integrations ---------------------------------------------------------------


IntegrationName: TypeAlias = Literal["shield", "costops", "governance", "edge"]
BreakerState: TypeAlias = Literal["closed", "half_open", "open"]


class CallerIds(msgspec.Struct, frozen=True, kw_only=True):
    """Who a request is for: the context's `user.id`, `team.id` and `project.id` (None when absent)."""

    user_id: str | None = None
    team_id: str | None = None
    project_id: str | None = None


class ShieldThreat(msgspec.Struct, frozen=True, kw_only=True):
    """One threat Shield found: `type` is e.g. `prompt_injection`, `confidence` in 0..1."""

    type: str
    severity: str
    confidence: float
    details: str | None = None


class ShieldVerdict(msgspec.Struct, frozen=True, kw_only=True):
    """What `shield.scan(text)` gives a policy: `passed` is Shield's `safe`, `score` in 0..1."""

    passed: bool
    score: float
    threats: tuple[ShieldThreat, ...] = ()

    def fact(self) -> dict[str, Any]:
        """The fact's value as the policy sees it: `{passed, score, threats: [{type, severity, confidence}]}`."""
        return {
            "passed": self.passed,
            "score": self.score,
            "threats": [
                {"type": t.type, "severity": t.severity, "confidence": t.confidence}
                for t in self.threats
            ],
        }


class BudgetCheck(msgspec.Struct, frozen=True, kw_only=True):
    """CostOps' answer to a budget check: the fact `costops.budget(estimated_cost)`."""

    allowed: bool
    remaining: float
    limit: float
    percentage: float
    warning: str | None = None

    def fact(self) -> dict[str, Any]:
        return {
            "allowed": self.allowed,
            "remaining": self.remaining,
            "limit": self.limit,
            "percentage": self.percentage,
            "warning": self.warning,
        }


class IntegrationState(msgspec.Struct, frozen=True, kw_only=True):
    """What an integration client reports about itself (for /ready and `integrations status`).

    `breaker` is its circuit breaker's state; `consecutive_failures` the
    failures since the last success; `last_error` the reason of the last
    failure (None after a success); `stale` true when an answer is being
    served from a cache past its freshness (Governance's approved models).
    """

    integration: IntegrationName
    url: str
    breaker: BreakerState = "closed"
    consecutive_failures: int = 0
    last_error: str | None = None
    stale: bool = False


@runtime_checkable
class ShieldScanner(Protocol):
    """LLM-Shield's prompt scanner, behind the `shield.scan(text)` fact (spec 4.5)."""

    async def scan(self, text: str, model: str | None, caller: CallerIds) -> ShieldVerdict:
        """Scan `text` meant for `model`.

        Raises policy_core.errors.IntegrationError naming `shield` and the reason
        (an error status, a timeout, a refused connection, a body that does not
        fit the contract, an open circuit breaker). Never returns a guess.
        """
        ...


@runtime_checkable
class CostOpsBudget(Protocol):
    """LLM-CostOps' budget check, behind the `costops.budget(estimated_cost)` fact (spec 4.5)."""

    async def budget(self, estimated_cost: float, caller: CallerIds) -> BudgetCheck:
        """Whether `caller` may spend `estimated_cost` USD more; raises IntegrationError (`costops`)."""
        ...


@runtime_checkable
class GovernanceModels(Protocol):
    """LLM-Governance's approved models, behind the `governance.approved_models()` fact."""

    async def approved_models(self) -> tuple[str, ...]:
        """The approved model ids; raises IntegrationError (`governance`) when no list is at hand.

        An adapter may cache the list and answer from it while Governance is
        down, within its TTL of staleness (not an error, spec 4.5).
        """
        ...


@runtime_checkable
class IntegrationProbe(Protocol):
    """An integration client's self-report and health check."""

    def state(self) -> IntegrationState:
        """The current state (no I/O)."""
        ...

    async def health(self) -> bool:
        """True when `GET /health` answers 2xx within the timeout (never raises)."""
        ...


class UsageEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One recorded use of a model, for CostOps `POST /api/v1/track` (camelCase on the wire)."""

    request_id: str
    cost: float
    timestamp: datetime
    user_id: str | None = None
    team_id: str | None = None
    project_id: str | None = None
    provider: str | None = None
    model: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


class ComplianceViolation(msgspec.Struct, frozen=True, kw_only=True):
    """One rule of Governance a policy document breaks."""

    rule: str
    severity: str
    description: str
    regulation: str | None = None


class ComplianceReport(msgspec.Struct, frozen=True, kw_only=True):
    """Governance's answer to `POST /api/v1/compliance/check`."""

    compliant: bool
    violations: tuple[ComplianceViolation, ...] = ()
    recommendations: tuple[Any, ...] = ()


class OutboxStatus(msgspec.Struct, frozen=True, kw_only=True):
    """What a durable outbox reports (for /metrics): events waiting, age of the oldest, fates."""

    sink: str
    depth: int
    oldest_age_seconds: float
    delivered: dict[str, int]


@runtime_checkable
class GovernanceSink(Protocol):
    """Takes audited decision records to Governance `POST /api/v1/audit/log`.

    `submit` never awaits or touches the network (a few microseconds: the
    outbox encodes the record and appends it to a file with one write, no
    fsync, so a killed process loses none); the adapter delivers at least
    once, durably, and never drops a record.
    """

    def submit(self, record: DecisionRecord) -> None:
        """Queue a record; never blocks, never raises."""
        ...


@runtime_checkable
class UsageSink(Protocol):
    """Takes recorded usage to CostOps `POST /api/v1/track` (queue only, like GovernanceSink)."""

    def submit(self, event: UsageEvent) -> None:
        """Queue an event; never blocks, never raises."""
        ...


@runtime_checkable
class EdgePublisher(Protocol):
    """Distributes policy changes to the Edge agent.

    `deploy` queues the change of one policy (`POST /api/v1/deploy`), retried
    until acknowledged; a newer change of the same policy id supersedes one
    still queued. `sync` pushes a whole set at once (`POST /api/v1/sync`) and
    raises IntegrationError when the agent does not acknowledge it.
    """

    def deploy(self, record: PolicyRecord, policy_set: str) -> None:
        """Queue the revision `record` (deleted when `record.deleted`); never blocks."""
        ...

    async def sync(self, policy_set: str, policies: Sequence[PolicyRecord]) -> None:
        """Push the full set; raises IntegrationError unless the agent answers 2xx."""
        ...


@runtime_checkable
class ComplianceChecker(Protocol):
    """Asks Governance whether a policy write may proceed (`POST /api/v1/compliance/check`)."""

    async def check(
        self, document: dict[str, Any], action: Literal["create", "update", "activate"]
    ) -> ComplianceReport:
        """Governance's verdict; raises IntegrationError when it cannot be had."""
        ...


# --- time -----------------------------------------------------------------------


@runtime_checkable
class Clock(Protocol):
    """Time source; tests substitute a manual clock."""

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...

    def time(self) -> float:
        """Epoch seconds (what the engine's `now` takes)."""
        ...

    def monotonic(self) -> float:
        """Seconds from an arbitrary origin that never goes back (for durations)."""
        ...
