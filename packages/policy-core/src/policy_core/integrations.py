"""The integration facts (spec 4.5): contracts, circuit breaker, call guard, caches, fact source.

Pure asyncio and msgspec: the aiohttp clients (policy_integrations) and the
memory fakes (policy_core.memory) are built from the same pieces, so they
behave alike and pass the same contract suite (policy_core.testing):

- the wire structs speak the services' camelCase JSON (`decode_answer` turns
  a body that does not fit into an `invalid` IntegrationError);
- `CircuitBreaker`: opens after `failures` consecutive failures, lets one
  half-open probe through after `cooldown` seconds, closes on its success;
- `CallGuard`: one per integration; the timeout, the breaker, the mapping of
  every failure to an IntegrationError, and the observer (metrics, spans);
- `TtlCache`: Shield's short-lived answers, Governance's approved models;
- `IntegrationFacts`: the FactSource the engine gathers integration facts from.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Generic, Protocol, TypeVar

import msgspec

from policy_core.errors import IntegrationError
from policy_core.model import FactFailure, FactRequest
from policy_core.ports import (
    BreakerState,
    BudgetCheck,
    CallerIds,
    Clock,
    CostOpsBudget,
    GovernanceModels,
    IntegrationProbe,
    IntegrationState,
    ShieldScanner,
    ShieldThreat,
    ShieldVerdict,
)

__all__ = [
    "BREAKER_CODES",
    "CALL_BUCKETS",
    "FAULTS",
    "BudgetAnswer",
    "BudgetRequest",
    "CallGuard",
    "CallObserver",
    "CallStats",
    "CircuitBreaker",
    "CostOpsCalls",
    "FakeService",
    "GivenFacts",
    "GovernanceCalls",
    "IntegrationFacts",
    "IntegrationSet",
    "MemoryCostOps",
    "MemoryGovernance",
    "MemoryShield",
    "ModelsAnswer",
    "ScanAnswer",
    "ScanContext",
    "ScanRequest",
    "ShieldCalls",
    "ThreatAnswer",
    "Transport",
    "TtlCache",
    "caller_ids",
    "decode_answer",
    "fake_integrations",
    "shield_cache_key",
]

T = TypeVar("T")
V = TypeVar("V")

#: `llm_policy_integration_breaker_state`: 0 closed, 1 half-open, 2 open.
BREAKER_CODES: dict[str, int] = {"closed": 0, "half_open": 1, "open": 2}


# --- the wire contracts (camelCase JSON, as the original services speak) ----------


class _Wire(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    pass


class ScanContext(_Wire, frozen=True, kw_only=True):
    user_id: str | None = None
    team_id: str | None = None
    project_id: str | None = None


class ScanRequest(_Wire, frozen=True, kw_only=True):
    """`POST /api/v1/scan`"""

    prompt: str
    model: str | None = None
    context: ScanContext


class ThreatAnswer(_Wire, frozen=True, kw_only=True):
    type: str
    severity: str
    confidence: float
    details: str | None = None
    location: Any = None


class ScanAnswer(_Wire, frozen=True, kw_only=True):
    safe: bool
    score: float
    threats: list[ThreatAnswer] = []

    def verdict(self) -> ShieldVerdict:
        return ShieldVerdict(
            passed=self.safe,
            score=self.score,
            threats=tuple(
                ShieldThreat(
                    type=t.type, severity=t.severity, confidence=t.confidence, details=t.details
                )
                for t in self.threats
            ),
        )


class BudgetRequest(_Wire, frozen=True, kw_only=True):
    """`POST /api/v1/budget/check`"""

    user_id: str | None = None
    team_id: str | None = None
    project_id: str | None = None
    estimated_cost: float


class BudgetAnswer(_Wire, frozen=True, kw_only=True):
    allowed: bool
    remaining: float
    limit: float
    percentage: float
    warning: str | None = None

    def check(self) -> BudgetCheck:
        return BudgetCheck(
            allowed=self.allowed,
            remaining=self.remaining,
            limit=self.limit,
            percentage=self.percentage,
            warning=self.warning,
        )


class ModelsAnswer(_Wire, frozen=True, kw_only=True):
    """`GET /api/v1/models/approved`"""

    models: list[str]


_decoders: dict[type[Any], msgspec.json.Decoder[Any]] = {}


def decode_answer(integration: str, body: bytes, kind: type[T]) -> T:
    """The answer in `body` as `kind`; an IntegrationError (`invalid`) saying what does not fit."""
    decoder = _decoders.get(kind)
    if decoder is None:
        decoder = _decoders[kind] = msgspec.json.Decoder(kind)
    try:
        return decoder.decode(body)  # type: ignore[no-any-return]
    except msgspec.ValidationError as exc:
        raise IntegrationError(
            integration, f"answered a body that does not fit: {exc}", "invalid"
        ) from None
    except msgspec.DecodeError as exc:
        raise IntegrationError(integration, f"answered malformed JSON: {exc}", "invalid") from None


def shield_cache_key(text: str, model: str | None) -> str:
    """What Shield answers are cached by: a hash of the text and the model."""
    import hashlib

    digest = hashlib.sha256()
    digest.update((model or "").encode())
    digest.update(b"\0")
    digest.update(text.encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def caller_ids(context: Mapping[str, Any]) -> CallerIds:
    """`user.id`, `team.id` and `project.id` of a context (strings; None when absent)."""

    def of(name: str) -> str | None:
        obj = context.get(name)
        value = obj.get("id") if isinstance(obj, Mapping) else None
        return None if value is None else str(value)

    return CallerIds(user_id=of("user"), team_id=of("team"), project_id=of("project"))


# --- circuit breaker -------------------------------------------------------------


class CircuitBreaker:
    """Closed -> open after `failures` consecutive failures; half-open after `cooldown` s.

    In half-open one call (the probe) goes through; its success closes the
    breaker, its failure opens it for another cooldown. `on_change` hears
    every state change (the metric gauge).
    """

    def __init__(
        self,
        *,
        failures: int = 5,
        cooldown: float = 5.0,
        clock: Clock | None = None,
        on_change: Callable[[BreakerState], None] | None = None,
    ) -> None:
        if failures < 1 or cooldown < 0:
            raise ValueError("a breaker needs failures >= 1 and cooldown >= 0")
        self.failures, self.cooldown = failures, cooldown
        self._monotonic = clock.monotonic if clock is not None else time.monotonic
        self._on_change = on_change
        self._state: BreakerState = "closed"
        self._consecutive = 0
        self._opened_at = 0.0
        self._probing = False

    @property
    def consecutive_failures(self) -> int:
        return self._consecutive

    @property
    def state(self) -> BreakerState:
        if self._state == "open" and self._monotonic() - self._opened_at >= self.cooldown:
            self._set("half_open")
        return self._state

    def allow(self) -> bool:
        """Whether a call may go out now (in half-open, only the one probe)."""
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self._probing:
            self._probing = True
            return True
        return False

    def release(self) -> None:
        """A call ended without an answer either way (cancelled): the next may probe."""
        self._probing = False

    def success(self) -> None:
        self._consecutive = 0
        self._probing = False
        if self._state != "closed":
            self._set("closed")

    def failure(self) -> None:
        self._consecutive += 1
        was_probe, self._probing = self._probing, False
        if was_probe or (self._state == "closed" and self._consecutive >= self.failures):
            self._opened_at = self._monotonic()
            self._set("open")

    def _set(self, state: BreakerState) -> None:
        self._state = state
        if self._on_change is not None:
            self._on_change(state)


# --- the guard around every call -------------------------------------------------


class CallObserver(Protocol):
    """Hears every integration call (metrics and spans) and every breaker change."""

    def call(
        self,
        integration: str,
        call: str,
        outcome: str,
        started_ns: int,
        seconds: float,
        error: str | None,
    ) -> None: ...

    def breaker(self, integration: str, state: BreakerState) -> None: ...


class CallGuard:
    """The timeout, the breaker and the error mapping of one integration's calls."""

    def __init__(
        self,
        integration: str,
        *,
        timeout: float = 0.2,
        failures: int = 5,
        cooldown: float = 5.0,
        clock: Clock | None = None,
        observer: CallObserver | None = None,
    ) -> None:
        self.integration, self.timeout = integration, timeout
        self._observer = observer
        self.breaker = CircuitBreaker(
            failures=failures,
            cooldown=cooldown,
            clock=clock,
            on_change=(lambda s: observer.breaker(integration, s)) if observer else None,
        )
        self.last_error: str | None = None
        if observer is not None:
            observer.breaker(integration, "closed")

    async def run(self, call: str, attempt: Callable[[], Awaitable[T]]) -> T:
        """`await attempt()` within the timeout and the breaker; every failure an IntegrationError."""
        started_ns = time.time_ns()
        start = time.perf_counter()
        if not self.breaker.allow():
            error = IntegrationError(self.integration, "circuit breaker is open", "breaker_open")
            self._observe(call, "breaker_open", started_ns, start, error.reason)
            raise error
        try:
            async with asyncio.timeout(self.timeout):
                value = await attempt()
        except IntegrationError as exc:
            failure = exc
        except TimeoutError:
            ms = round(self.timeout * 1000)
            failure = IntegrationError(self.integration, f"timed out after {ms} ms", "timeout")
        except asyncio.CancelledError:
            self.breaker.release()  # a cancelled probe lets the next call probe
            raise
        except (ConnectionError, OSError) as exc:
            failure = IntegrationError(
                self.integration, f"unreachable: {type(exc).__name__}: {exc}", "error"
            )
        except Exception as exc:
            failure = IntegrationError(
                self.integration, f"failed: {type(exc).__name__}: {exc}", "error"
            )
        else:
            self.breaker.success()
            self.last_error = None
            self._observe(call, "ok", started_ns, start, None)
            return value
        self.breaker.failure()
        self.last_error = failure.reason
        self._observe(call, failure.outcome, started_ns, start, failure.reason)
        raise failure

    def status_error(self, status: int) -> IntegrationError:
        """The error of a non-2xx answer."""
        return IntegrationError(self.integration, f"answered HTTP {status}", "error")

    def _observe(
        self, call: str, outcome: str, started_ns: int, start: float, error: str | None
    ) -> None:
        if self._observer is not None:
            seconds = time.perf_counter() - start
            self._observer.call(self.integration, call, outcome, started_ns, seconds, error)


# --- caches ----------------------------------------------------------------------


class TtlCache(Generic[V]):
    """A bounded map whose entries are fresh for `ttl` seconds (then only `stale`)."""

    def __init__(self, ttl: float, *, size: int = 10_000, clock: Clock | None = None) -> None:
        self.ttl, self.size = ttl, size
        self._monotonic = clock.monotonic if clock is not None else time.monotonic
        self._items: OrderedDict[str, tuple[float, V]] = OrderedDict()

    def fresh(self, key: str) -> V | None:
        """The value when stored less than `ttl` seconds ago."""
        item = self._items.get(key)
        if item is None or self._monotonic() - item[0] >= self.ttl:
            return None
        return item[1]

    def stale(self, key: str, max_age: float) -> V | None:
        """The value when stored less than `max_age` seconds ago (fresh or not)."""
        item = self._items.get(key)
        if item is None or self._monotonic() - item[0] >= max_age:
            return None
        return item[1]

    def put(self, key: str, value: V) -> None:
        if self.ttl <= 0 and self.size <= 0:
            return
        self._items[key] = (self._monotonic(), value)
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)


# --- the fact source -------------------------------------------------------------


class IntegrationFacts:
    """Integration facts for `Selection.gather_facts`: each asked concurrently, within a timeout.

    A fact whose integration is missing or fails is a FactFailure in the
    result (never an exception): the rule reading it then has an evaluation
    error naming the integration and the reason.
    """

    def __init__(
        self,
        *,
        shield: ShieldScanner | None = None,
        costops: CostOpsBudget | None = None,
        governance: GovernanceModels | None = None,
        timeout: float = 0.2,
    ) -> None:
        self.shield, self.costops, self.governance = shield, costops, governance
        self.timeout = timeout

    @property
    def configured(self) -> frozenset[str]:
        """The integrations this source can ask."""
        present = {"shield": self.shield, "costops": self.costops, "governance": self.governance}
        return frozenset(name for name, port in present.items() if port is not None)

    async def fetch(
        self,
        requests: Sequence[FactRequest],
        *,
        context: Mapping[str, Any],
        record: bool = True,
    ) -> dict[FactRequest, Any]:
        caller = caller_ids(context)
        if len(requests) == 1:
            return {requests[0]: await self._one(requests[0], context, caller)}
        values = await asyncio.gather(*(self._one(r, context, caller) for r in requests))
        return dict(zip(requests, values, strict=True))

    async def _one(
        self, request: FactRequest, context: Mapping[str, Any], caller: CallerIds
    ) -> Any:
        kind = request[0]
        integration = kind.split(".", 1)[0]
        try:
            async with asyncio.timeout(self.timeout):
                return await self._ask(request, context, caller)
        except IntegrationError as exc:
            return FactFailure(exc.integration, exc.reason)
        except TimeoutError:
            return FactFailure(integration, f"timed out after {round(self.timeout * 1000)} ms")
        except LookupError as exc:
            return FactFailure(integration, str(exc.args[0]) if exc.args else "is not configured")
        except Exception as exc:
            return FactFailure(integration, f"failed: {type(exc).__name__}: {exc}")

    async def _ask(
        self, request: FactRequest, context: Mapping[str, Any], caller: CallerIds
    ) -> Any:
        kind = request[0]
        if kind == "shield.scan":
            if self.shield is None:
                raise LookupError("is not configured")
            text = request[1]
            if type(text) is not str:
                return FactFailure("shield", f"scan() needs a string, got {_type(text)}")
            llm = context.get("llm")
            model = llm.get("model") if isinstance(llm, Mapping) else None
            verdict = await self.shield.scan(text, model if type(model) is str else None, caller)
            return verdict.fact()
        if kind == "costops.budget":
            if self.costops is None:
                raise LookupError("is not configured")
            cost = request[1]
            if type(cost) not in (int, float):
                return FactFailure("costops", f"budget() needs a number, got {_type(cost)}")
            check = await self.costops.budget(float(cost), caller)
            return check.fact()
        if kind == "governance.approved_models":
            if self.governance is None:
                raise LookupError("is not configured")
            return list(await self.governance.approved_models())
        return FactFailure(kind.split(".", 1)[0], f"has no fact {kind}")


def _type(value: Any) -> str:
    return "null" if value is None else type(value).__name__


# --- the calls, over any transport ---------------------------------------------------


class Transport(Protocol):
    """One HTTP exchange with an integration: (status, body). Raises on a connection fault.

    policy_integrations speaks it over aiohttp; policy_core.memory simulates it.
    """

    async def exchange(self, method: str, path: str, body: bytes | None) -> tuple[int, bytes]: ...


_json = msgspec.json.Encoder()


class _Calls:
    """What every integration client shares: the transport, the guard, the state."""

    integration: str = ""

    def __init__(self, transport: Transport, guard: CallGuard, url: str = "") -> None:
        self.transport, self.guard, self.url = transport, guard, url

    async def _post(self, call: str, path: str, payload: Any, kind: type[T]) -> T:
        body = _json.encode(payload)

        async def attempt() -> T:
            status, answer = await self.transport.exchange("POST", path, body)
            if not 200 <= status < 300:
                raise self.guard.status_error(status)
            return decode_answer(self.integration, answer, kind)

        return await self.guard.run(call, attempt)

    async def _get(self, call: str, path: str, kind: type[T]) -> T:
        async def attempt() -> T:
            status, answer = await self.transport.exchange("GET", path, None)
            if not 200 <= status < 300:
                raise self.guard.status_error(status)
            return decode_answer(self.integration, answer, kind)

        return await self.guard.run(call, attempt)

    def _stale(self) -> bool:
        return False

    def state(self) -> IntegrationState:
        return IntegrationState(
            integration=self.integration,  # type: ignore[arg-type]
            url=self.url,
            breaker=self.guard.breaker.state,
            consecutive_failures=self.guard.breaker.consecutive_failures,
            last_error=self.guard.last_error,
            stale=self._stale(),
        )

    async def health(self) -> bool:
        try:
            async with asyncio.timeout(self.guard.timeout):
                status, _ = await self.transport.exchange("GET", "/health", None)
        except Exception:
            return False
        return 200 <= status < 300


class ShieldCalls(_Calls):
    """`shield.scan`: `POST /api/v1/scan`, answers cached `cache_seconds` by hash(text, model)."""

    integration = "shield"

    def __init__(
        self,
        transport: Transport,
        guard: CallGuard,
        url: str = "",
        *,
        cache_seconds: float = 5.0,
        cache_size: int = 10_000,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(transport, guard, url)
        self.cache: TtlCache[ShieldVerdict] = TtlCache(cache_seconds, size=cache_size, clock=clock)

    async def scan(self, text: str, model: str | None, caller: CallerIds) -> ShieldVerdict:
        key = shield_cache_key(text, model)
        if self.cache.ttl > 0 and (hit := self.cache.fresh(key)) is not None:
            return hit
        request = ScanRequest(
            prompt=text,
            model=model,
            context=ScanContext(
                user_id=caller.user_id, team_id=caller.team_id, project_id=caller.project_id
            ),
        )
        answer = await self._post("scan", "/api/v1/scan", request, ScanAnswer)
        verdict = answer.verdict()
        if self.cache.ttl > 0:
            self.cache.put(key, verdict)
        return verdict


class CostOpsCalls(_Calls):
    """`costops.budget`: `POST /api/v1/budget/check` (never cached: spend moves)."""

    integration = "costops"

    async def budget(self, estimated_cost: float, caller: CallerIds) -> BudgetCheck:
        request = BudgetRequest(
            user_id=caller.user_id,
            team_id=caller.team_id,
            project_id=caller.project_id,
            estimated_cost=estimated_cost,
        )
        answer = await self._post("budget", "/api/v1/budget/check", request, BudgetAnswer)
        return answer.check()


class GovernanceCalls(_Calls):
    """`governance.approved_models`: `GET /api/v1/models/approved`, cached.

    Fresh for `ttl` seconds; while Governance fails (or its breaker is open) a
    list fetched less than `stale_seconds` ago is still served.
    """

    integration = "governance"

    def __init__(
        self,
        transport: Transport,
        guard: CallGuard,
        url: str = "",
        *,
        ttl: float = 60.0,
        stale_seconds: float = 3600.0,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(transport, guard, url)
        self.stale_seconds = stale_seconds
        self.cache: TtlCache[tuple[str, ...]] = TtlCache(ttl, size=1, clock=clock)
        self._serving_stale = False

    async def approved_models(self) -> tuple[str, ...]:
        fresh = self.cache.fresh("models")
        if fresh is not None:
            return fresh
        try:
            answer = await self._get("approved_models", "/api/v1/models/approved", ModelsAnswer)
        except IntegrationError:
            stale = self.cache.stale("models", self.stale_seconds)
            if stale is None:
                raise
            self._serving_stale = True
            return stale
        models = tuple(answer.models)
        self.cache.put("models", models)
        self._serving_stale = False
        return models

    def _stale(self) -> bool:
        return self._serving_stale


# --- simulated services (the memory fakes; policy_core.memory re-exports them) --------


#: Faults a FakeService injects: `error` answers `status` (503 by default), `hang`
#: accepts the call and never answers, `refused` refuses the connection,
#: `malformed` answers broken JSON, `wrong_type` JSON of the wrong types.
FAULTS = ("error", "hang", "refused", "malformed", "wrong_type")

_WRONG_TYPED = (
    b'{"safe": "yes", "score": "high", "allowed": "maybe", "remaining": [], "models": "all"}'
)


class FakeService:
    """A simulated integration service behind a memory client (a Transport).

    `respond(method, path, body)` computes the healthy answer; `fault` (one
    of FAULTS, or None) and `latency` (seconds before answering) change what
    the next calls see. `calls` lists every (method, path, JSON body) received.
    """

    def __init__(self, respond: Callable[[str, str, Any], Any]) -> None:
        self._respond = respond
        self.fault: str | None = None
        self.status = 503
        self.latency = 0.0
        self.calls: list[tuple[str, str, Any]] = []

    async def exchange(self, method: str, path: str, body: bytes | None) -> tuple[int, bytes]:
        if self.fault == "refused":
            raise ConnectionRefusedError(111, "Connection refused")
        payload = msgspec.json.decode(body) if body else None
        self.calls.append((method, path, payload))
        if self.fault == "hang":
            await asyncio.Event().wait()
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        if path == "/health":
            return (503 if self.fault == "error" else 200), b"{}"
        if self.fault == "error":
            return self.status, b'{"error": "unavailable"}'
        if self.fault == "malformed":
            return 200, b'{"safe": tr'
        if self.fault == "wrong_type":
            return 200, _WRONG_TYPED
        return 200, msgspec.json.encode(self._respond(method, path, payload))


def _guard(integration: str, guard: CallGuard | None, timeout: float) -> CallGuard:
    return guard if guard is not None else CallGuard(integration, timeout=timeout)


class MemoryShield(ShieldCalls):
    """Shield in memory: a prompt containing one of `threats` (case-insensitive) is unsafe.

    `answers` maps a prompt to the exact Shield answer (camelCase JSON) to give.
    """

    def __init__(
        self,
        threats: Sequence[str] = (),
        *,
        answers: Mapping[str, Any] | None = None,
        guard: CallGuard | None = None,
        timeout: float = 0.2,
        cache_seconds: float = 0.0,
        clock: Clock | None = None,
    ) -> None:
        self.threats = [t.lower() for t in threats]
        self.answers = dict(answers or {})
        self.service = FakeService(self._answer)
        super().__init__(
            self.service,
            _guard("shield", guard, timeout),
            "memory://shield",
            cache_seconds=cache_seconds,
            clock=clock,
        )

    def _answer(self, method: str, path: str, body: Any) -> Any:
        prompt = body["prompt"]
        if prompt in self.answers:
            return self.answers[prompt]
        found = [t for t in self.threats if t in prompt.lower()]
        return {
            "safe": not found,
            "score": 0.95 if found else 0.02,
            "threats": [
                {"type": "prompt_injection", "severity": "high", "confidence": 0.95, "details": t}
                for t in found
            ],
        }


class MemoryCostOps(CostOpsCalls):
    """CostOps in memory: every caller has `limit` USD, of which `spent` is gone.

    `allowed` is spent + estimated cost <= limit; a warning from 80 % on.
    """

    def __init__(
        self,
        *,
        limit: float = 100.0,
        spent: float = 0.0,
        guard: CallGuard | None = None,
        timeout: float = 0.2,
    ) -> None:
        self.limit, self.spent = limit, spent
        self.service = FakeService(self._answer)
        super().__init__(self.service, _guard("costops", guard, timeout), "memory://costops")

    def _answer(self, method: str, path: str, body: Any) -> Any:
        after = self.spent + float(body["estimatedCost"])
        percentage = round(100.0 * after / self.limit, 4) if self.limit else 100.0
        return {
            "allowed": after <= self.limit,
            "remaining": round(max(self.limit - self.spent, 0.0), 6),
            "limit": self.limit,
            "percentage": percentage,
            "warning": "budget 80% used" if percentage >= 80 else None,
        }


class MemoryGovernance(GovernanceCalls):
    """Governance in memory: approves `models`."""

    def __init__(
        self,
        models: Sequence[str] = (),
        *,
        guard: CallGuard | None = None,
        timeout: float = 0.2,
        ttl: float = 0.0,
        stale_seconds: float = 3600.0,
        clock: Clock | None = None,
    ) -> None:
        self.models = list(models)
        self.service = FakeService(lambda *_: {"models": self.models})
        super().__init__(
            self.service,
            _guard("governance", guard, timeout),
            "memory://governance",
            ttl=ttl,
            stale_seconds=stale_seconds,
            clock=clock,
        )


# --- what a deployment has: the source, the clients, their statistics ---------------

#: Upper bounds (seconds) of the `llm_policy_integration_call_seconds` buckets.
CALL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.5)


class CallStats:
    """Counts and latencies of every integration call, and breaker states (a CallObserver).

    Read at scrape time by /metrics (`llm_policy_integration_calls_total`,
    `..._call_seconds`, `..._breaker_state`); `listen` adds another observer
    (the HTTP API's spans) that hears every call as it ends.
    """

    def __init__(self) -> None:
        self.calls: dict[tuple[str, str, str], int] = {}
        #: (integration, call) -> [count per bucket (+Inf last), sum of seconds]
        self.latency: dict[tuple[str, str], tuple[list[int], list[float]]] = {}
        self.breakers: dict[str, BreakerState] = {}
        self._listeners: list[CallObserver] = []

    def listen(self, observer: CallObserver) -> None:
        self._listeners.append(observer)

    def call(
        self,
        integration: str,
        call: str,
        outcome: str,
        started_ns: int,
        seconds: float,
        error: str | None,
    ) -> None:
        key = (integration, call, outcome)
        self.calls[key] = self.calls.get(key, 0) + 1
        slot = self.latency.get((integration, call))
        if slot is None:
            slot = self.latency[(integration, call)] = ([0] * (len(CALL_BUCKETS) + 1), [0.0])
        index = next((i for i, b in enumerate(CALL_BUCKETS) if seconds <= b), len(CALL_BUCKETS))
        slot[0][index] += 1
        slot[1][0] += seconds
        for listener in self._listeners:
            with contextlib.suppress(Exception):  # an observer never breaks a call
                listener.call(integration, call, outcome, started_ns, seconds, error)

    def breaker(self, integration: str, state: BreakerState) -> None:
        self.breakers[integration] = state
        for listener in self._listeners:
            with contextlib.suppress(Exception):
                listener.breaker(integration, state)


class IntegrationSet:
    """The integrations one deployment provides (built by the composition root).

    `facts` is the engine's source of integration facts (None when no fact
    integration is configured); `probes` the clients by name, for /ready and
    `llm-policy integrations status`; `stats` their call statistics.
    """

    def __init__(
        self,
        facts: IntegrationFacts | None = None,
        probes: Mapping[str, IntegrationProbe] | None = None,
        stats: CallStats | None = None,
    ) -> None:
        self.facts = facts
        self.probes: dict[str, IntegrationProbe] = dict(probes or {})
        self.stats = stats if stats is not None else CallStats()

    @property
    def configured(self) -> frozenset[str]:
        """Names of the integrations provided (`shield`, `costops`, `governance`, `edge`)."""
        return frozenset(self.probes) | (self.facts.configured if self.facts else frozenset())

    def states(self) -> dict[str, IntegrationState]:
        return {name: probe.state() for name, probe in sorted(self.probes.items())}

    async def report(self) -> dict[str, dict[str, Any]]:
        """Each integration's state and whether `GET /health` answers (never raises)."""
        names = sorted(self.probes)
        healthy = await asyncio.gather(*(self.probes[n].health() for n in names))
        out: dict[str, dict[str, Any]] = {}
        for name, up in zip(names, healthy, strict=True):
            state = msgspec.to_builtins(self.probes[name].state())
            state["healthy"] = bool(up)
            out[name] = state
        return out


def fake_integrations(
    specs: Mapping[Any, Any] | None, *, timeout: float = 0.05
) -> IntegrationFacts:
    """IntegrationFacts over memory fakes described by `specs` (name -> FakeIntegration-like:
    `threats`, `limit`, `spent`, `models`, `fault`); an integration not listed is not configured.
    """
    fakes: dict[str, Any] = {}
    for name, spec in (specs or {}).items():
        fake: Any
        if name == "shield":
            fake = MemoryShield(spec.threats)
        elif name == "costops":
            fake = MemoryCostOps(limit=spec.limit, spent=spec.spent)
        else:
            fake = MemoryGovernance(spec.models)
        fake.service.fault = spec.fault
        fakes[name] = fake
    return IntegrationFacts(
        shield=fakes.get("shield"),
        costops=fakes.get("costops"),
        governance=fakes.get("governance"),
        timeout=timeout,
    )


class GivenFacts:
    """A usage store and an integration source answering given facts first (test cases, suites).

    A fact in `given` answers as given; other integration facts come from
    `integrations` (memory fakes, usually); counters not given are missing.
    """

    def __init__(
        self, given: Mapping[FactRequest, Any] | None, integrations: IntegrationFacts
    ) -> None:
        self.given: dict[FactRequest, Any] = dict(given or {})
        self.integrations = integrations

    async def fetch(
        self,
        requests: Sequence[FactRequest],
        *,
        record: bool = True,
        context: Mapping[str, Any] | None = None,
    ) -> dict[FactRequest, Any]:
        out = {r: self.given[r] for r in requests if r in self.given}
        if context is None:  # the usage store's side
            return out
        rest = [r for r in requests if r not in out]
        if rest:
            out.update(await self.integrations.fetch(rest, context=context, record=record))
        return out

    async def record_spend(self, *_: Any, **__: Any) -> None:
        return None
