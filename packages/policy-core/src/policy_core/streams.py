"""The stream judge (spec 7.2): judge a streamed response delta by delta, release what is safe.

`plan_stream` reads the response-phase rules once per Selection and finds
how `response.text` is used:

- through patterns (`response.text.matches('re')`, `.contains('s')`,
  `.starts_with('s')`) and the PII detector (`response.contains_pii`,
  `response.pii_types`, `contains_pii(response.text)`, a `redact`
  obligation of a PII pattern on `response.text`): the judge holds back a
  window and releases text in which no pattern or detector matches;
- in any other way (`response.text.size()`, `==`, `ends_with`, a modify
  of `response.text`, a `redact` with pattern `all`): no piece of the text
  can be judged alone, so everything is held until `close`;
- not at all: every delta is released at once.

The reach `m` is the longest span a pattern can match: derived from the
patterns when each is bounded (the window is then `2 * m`, so that the text
is rescanned once per `m` characters, not once per delta), else the largest
`config.stream_window` of the policies involved (default 1,024; window =
reach). The PII detector's spans are bounded (primitives.pii.MAX_SPAN, an
e-mail address of at most 254 characters).

A check scans the held text plus the last `m + 1` released characters (a
match of at most `m` characters that ends in the new text starts there, and
one more character gives `\\b` its context) and releases up to the earliest
match, or up to the last `m - 1` characters. A match that is complete (it
does not touch the end of the text seen so far) stops releasing until
`close`; the response is then evaluated on the text so far, and a deny is
answered at once. `close` evaluates the whole text with `evaluate_response`,
so the final decision is exactly that one; the rest is the text that
decision passes on, after what was released.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from policy_core.language.phases import TextUses
from policy_core.model import Decision, FactRequest, RedactObligation
from policy_core.regex import pattern_reach

if TYPE_CHECKING:
    from policy_core.compiler.compiled import CompiledPolicy


class Selection(Protocol):
    """What a stream judge needs of the engine's Selection."""

    def evaluate_response(
        self,
        context: Mapping[str, Any],
        response: Mapping[str, Any],
        *,
        trace: bool = False,
        now: float | None = None,
        facts: Mapping[FactRequest, Any] | None = None,
    ) -> Decision: ...


__all__ = [
    "DEFAULT_STREAM_WINDOW",
    "ResponseStream",
    "StreamChunk",
    "StreamPlan",
    "pattern_reach",
    "plan_stream",
]

DEFAULT_STREAM_WINDOW = 1024


class StreamChunk(NamedTuple):
    """What `feed` or `close` answers: the text to release now, and a decision when there is one."""

    text: str
    decision: Decision | None = None


class StreamPlan:
    """How the response-phase rules of a Selection read `response.text` (see the module doc)."""

    __slots__ = ("hold_all", "patterns", "pii", "reach", "unbounded", "window")

    def __init__(
        self,
        *,
        patterns: tuple[str, ...],
        pii: bool,
        hold_all: bool,
        reach: int,
        window: int,
        unbounded: tuple[str, ...],
    ) -> None:
        self.patterns = patterns
        self.pii = pii
        self.hold_all = hold_all
        self.reach = reach
        self.window = window
        self.unbounded = unbounded

    @property
    def reads_text(self) -> bool:
        return self.hold_all or self.pii or bool(self.patterns)

    def __repr__(self) -> str:
        return (
            f"StreamPlan(patterns={self.patterns!r}, pii={self.pii}, hold_all={self.hold_all}, "
            f"reach={self.reach}, window={self.window})"
        )


def plan_stream(policies: Iterable[CompiledPolicy]) -> StreamPlan:
    """The StreamPlan of a Selection's active response-phase policy parts."""
    uses = TextUses()
    windows: list[int] = []
    for part in policies:
        if part.policy.config.stream_window is not None:
            windows.append(part.policy.config.stream_window)
        uses.visit(part.scope_ir)
        for exception in part.exceptions:
            uses.visit(exception.ir)
        for rule in part.rules:
            uses.visit(rule.ir)
            if "response.text" in rule.modifications:
                uses.hold_all = True
            for obligation in rule.obligations:
                if (
                    isinstance(obligation, RedactObligation)
                    and "response.text" in obligation.fields
                ):
                    if obligation.pattern in ("all", "*"):
                        uses.hold_all = True
                    else:
                        uses.pii = True
    patterns = tuple(dict.fromkeys(uses.patterns))
    reaches = {p: pattern_reach(p) for p in patterns}
    unbounded = tuple(p for p, r in reaches.items() if r is None)
    bounded = [r for r in reaches.values() if r is not None]
    if uses.pii:
        from policy_core.primitives.pii import MAX_SPAN

        bounded.append(MAX_SPAN)
    if unbounded:
        # The window of the policies; never less than a PII span, which redaction needs whole.
        reach = max(windows, default=DEFAULT_STREAM_WINDOW)
        reach = window = max(reach, *bounded) if bounded else reach
    else:
        reach = max(bounded, default=1)
        window = 2 * reach
    return StreamPlan(
        patterns=patterns,
        pii=uses.pii,
        hold_all=uses.hold_all,
        reach=max(reach, 1),
        window=max(window, 1),
        unbounded=unbounded,
    )


def _compiled(patterns: tuple[str, ...]) -> tuple[Any, ...]:
    from policy_core.regex import _compile

    return tuple(_compile(p) for p in patterns)


def _first_pii(text: str) -> tuple[int, int] | None:
    """The earliest PII candidate any detector confirms in `text` (str offsets), overlaps kept."""
    from policy_core.primitives import pii

    data = pii._encode(text)
    engine = pii._engine()
    best: tuple[int, int] | None = None
    for index in pii._candidates(data):
        for span in pii._scan(data, index, engine.regexes[index]):
            if best is None or span[0] < best[0]:
                best = span
            break
    if best is None or len(data) == len(text):
        return best
    return (
        len(data[: best[0]].decode("utf-8", "surrogatepass")),
        len(data[: best[1]].decode("utf-8", "surrogatepass")),
    )


class ResponseStream:
    """One streamed response: `feed(delta)` per delta, then `close(usage)` once.

    Not thread-safe (one stream, one consumer). Guarantees: spec 7.2.
    """

    __slots__ = (
        "_context",
        "_decision",
        "_denied",
        "_facts",
        "_held",
        "_model",
        "_now",
        "_parts",
        "_plan",
        "_regexes",
        "_released",
        "_selection",
        "_stalled",
        "_tail",
    )

    def __init__(
        self,
        selection: Selection,
        plan: StreamPlan,
        context: Mapping[str, Any],
        *,
        now: float | None = None,
        facts: Mapping[FactRequest, Any] | None = None,
        model: str | None = None,
    ) -> None:
        self._selection = selection
        self._plan = plan
        self._context = context
        self._now = now
        self._facts = facts
        self._model = model
        self._parts: list[str] = []
        self._held = ""  # received, not released
        self._tail = ""  # the last reach + 1 released characters
        self._released = 0
        self._stalled = plan.hold_all
        self._denied: Decision | None = None
        self._decision: Decision | None = None
        self._regexes = _compiled(plan.patterns) if plan.patterns else ()

    @property
    def window(self) -> int | None:
        """The most characters held back while no pattern matches; None: all until close."""
        if self._plan.hold_all:
            return None
        return self._plan.window if self._plan.reads_text else 0

    def feed(self, delta: str) -> StreamChunk:
        """The text that may be released now (possibly ""), and the deny once a rule denies."""
        if self._decision is not None:
            raise RuntimeError("the stream is closed")
        self._parts.append(delta)
        if self._denied is not None:
            return StreamChunk("", self._denied)
        plan = self._plan
        if not plan.reads_text:
            self._released += len(delta)
            return StreamChunk(delta)
        held = self._held = self._held + delta
        if self._stalled or len(held) <= plan.window:
            return StreamChunk("")
        return self._check()

    def _check(self) -> StreamChunk:
        plan = self._plan
        reach = plan.reach
        tail, held = self._tail, self._held
        region = tail + held
        cut = len(region) - (reach - 1)  # in region offsets; never before the tail's end
        first: tuple[int, int] | None = None
        for regex in self._regexes:
            m = regex.search(region)
            if m is not None and (first is None or m.start() < first[0]):
                first = (m.start(), m.end())
        if plan.pii:
            span = _first_pii(region)
            if span is not None and (first is None or span[0] < first[0]):
                first = span
        if first is not None and first[0] < cut:
            cut = first[0]
            if first[1] < len(region):
                # A complete match: nothing after it is released before close.
                self._stalled = True
                decision = self._selection.evaluate_response(
                    self._context, self._response_so_far(), now=self._now, facts=self._facts
                )
                if decision.decision == "deny":
                    self._denied = decision
        cut = max(cut, len(tail))
        out = region[len(tail) : cut]
        if out:
            self._released += len(out)
            self._held = region[cut:]
            self._tail = region[max(0, cut - reach - 1) : cut]
        return StreamChunk(out, self._denied)

    def _response_so_far(self) -> dict[str, Any]:
        response: dict[str, Any] = {"text": "".join(self._parts)}
        if self._model is not None:
            response["model"] = self._model
        return response

    def close(
        self,
        usage: Mapping[str, Any] | None = None,
        *,
        finish_reason: str | None = None,
        tool_calls: list[Any] | None = None,
        model: str | None = None,
    ) -> StreamChunk:
        """The final decision (`evaluate_response` on the whole text) and the rest of the text."""
        if self._decision is not None:
            raise RuntimeError("the stream is closed")
        response = self._response_so_far()
        if model is not None:
            response["model"] = model
        for key, value in (
            ("usage", usage),
            ("finish_reason", finish_reason),
            ("tool_calls", tool_calls),
        ):
            if value is not None:
                response[key] = value
        decision = self._decision = self._selection.evaluate_response(
            self._context, response, now=self._now, facts=self._facts
        )
        if decision.decision == "deny":
            return StreamChunk("", decision)
        passed = decision.modifications.get("response.text", response["text"])
        if type(passed) is not str:
            passed = response["text"]
        return StreamChunk(passed[self._released :], decision)

    @property
    def released(self) -> int:
        """Characters released so far."""
        return self._released
