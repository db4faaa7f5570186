"""Issue 15 end to end: the real LiteLLM proxy with our guardrail, on loopback only.

Two proxies run from docs/gateways.md's config.yaml, with LiteLLM's own CLI
(`litellm --config config.yaml --port P --host 127.0.0.1`, a master key, no
database): one with the engine embedded (`POLICY_DIR`), one against a real
`llm-policy serve` (`POLICY_SERVER_URL`, memory deployment, the same policies
seeded). Both sit in front of the fake OpenAI-compatible upstream and are
driven by the stock `openai` client. Every scenario runs against both:
a deny never reaches the upstream and the client reads our reason; a modify
reaches it rewritten; PII in a completion comes back redacted, streamed and
not; a stream that trips a deny is cut before the offending span; spend is
settled with the upstream's usage and the budget cap then denies. With the
server stopped, the remote guardrail fails closed.

The proxies run under `strace -e connect,sendto,sendmsg` and the test fails if
either (or any child) addressed anything but loopback or a local socket.
Each proxy takes 20-60 s to start on this machine; they start once, together.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest
from policy_cli.testing import clean_env, free_port, llm_policy, wait_ready
from policy_core.primitives.redact import redact_text
from policy_integrations.gateways.fake_upstream import Reply, ThreadedFakeUpstream

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "gateways.md"
MASTER_KEY = "sk-litellm-test-master-key"
LITELLM = Path(sys.executable).with_name("litellm")

POLICIES = """\
version: "1"
metadata: {id: gateway-e2e, name: LiteLLM guardrail end to end}
config: {cache_ttl_seconds: 0}
rules:
  - id: confidential-project
    condition: "llm.prompt.contains('project zebra')"
    action: {decision: deny, reason: "Project Zebra is confidential ({{ user.id }})"}
  - id: drafts-run-small
    condition: "llm.prompt.contains('[draft]') && llm.model == 'gpt-4o'"
    action:
      decision: modify
      reason: Drafts run on gpt-4o-mini with at most 16 tokens
      modifications: {llm.model: gpt-4o-mini, llm.max_tokens: 16}
  - id: redact-prompt-pii
    condition: llm.contains_pii
    action: {decision: modify, reason: PII is redacted before the request leaves}
    obligations:
      - {type: redact, fields: [llm.messages], pattern: pii}
  - id: flagged
    condition: "llm.prompt.contains('[review]')"
    action: {decision: warn, reason: "flagged for review"}
  - id: daily-budget
    condition: "has(user.id) && budget.spent('user:' + user.id, 'day') >= 0.5"
    action:
      decision: deny
      reason: "{{ user.id }} spent {{ budget.spent('user:' + user.id, 'day') }} USD today"
  - id: no-launch-codes
    phase: response
    condition: "response.text.contains('LAUNCH-CODE')"
    action: {decision: deny, reason: The answer carries a launch code}
  - id: redact-answer-pii
    phase: response
    condition: response.contains_pii
    action: {decision: warn, reason: PII in the answer was redacted}
    obligations:
      - {type: redact, fields: [response.text], pattern: pii}
"""

PII_ANSWER = "Write to jane.doe@example.com or call 555-867-5309 today."
FILLER = "The quick brown fox jumps over the lazy dog. " * 30  # 1,350 characters
LAUNCH_ANSWER = FILLER + "The LAUNCH-CODE is 0000. " + FILLER


def docs_config() -> str:
    """The config.yaml of docs/gateways.md's LiteLLM section (the one block with `guardrails:`)."""
    text = DOCS.read_text(encoding="utf-8")
    section = text.split("## LiteLLM proxy guardrail", 1)[1].split("\n## ", 1)[0]
    blocks = [b for b in re.findall(r"```yaml\n(.*?)```", section, re.DOTALL) if "guardrails:" in b]
    assert len(blocks) == 1, "docs/gateways.md's LiteLLM section has one config.yaml block"
    return blocks[0]


def docs_command() -> tuple[dict[str, str], list[str]]:
    """The section's shell block: the LITELLM_* exports it names and the `litellm` command line."""
    text = DOCS.read_text(encoding="utf-8")
    section = text.split("## LiteLLM proxy guardrail", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```bash\n(.*?)```", section, re.DOTALL)
    exports = dict(re.findall(r"\b(LITELLM_[A-Z_]+)=(\S+)", block.split("\n", 1)[0]))
    (command,) = [line.split() for line in block.splitlines() if line.startswith("litellm ")]
    return exports, command


# --- the processes ---------------------------------------------------------------------------


def _script(body: dict[str, object]) -> Reply | None:
    """The fake model's answer, chosen by a marker in the last user message."""
    messages = body.get("messages")
    last = messages[-1] if isinstance(messages, list) and messages else {}
    text = str(last.get("content", "")) if isinstance(last, dict) else ""
    if "[answer:pii]" in text:
        return Reply(text=PII_ANSWER, chunk_size=5)
    if "[answer:launch]" in text:
        return Reply(text=LAUNCH_ANSWER, chunk_size=7)
    if "[answer:costly]" in text:  # gpt-4o: 1,000 x 2.5 + 100,000 x 10 USD per million = 1.0025
        return Reply(text="A long essay.", prompt_tokens=1000, completion_tokens=100_000)
    return None


@pytest.fixture(scope="module")
def upstream() -> Iterator[ThreadedFakeUpstream]:
    with ThreadedFakeUpstream() as fake:
        fake.script = _script
        yield fake


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("gateway-policies")
    (path / "gateway.yaml").write_text(POLICIES)
    return path


class PolicyServer:
    """`llm-policy serve` (memory deployment, the policies seeded) that a test may stop and restart."""

    def __init__(self, policy_dir: Path, data: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = data / "server.log"
        self.env = clean_env(
            LLM_POLICY_ENV="development",
            LLM_POLICY_DEPLOYMENT="memory",
            LLM_POLICY_DATA_DIR=str(data),
            LLM_POLICY_PORT=str(self.port),
            LLM_POLICY_SEED_POLICIES=str(policy_dir),
        )
        minted = subprocess.run(
            llm_policy("token", "--sub", "litellm-gateway", "--role", "evaluator"),
            env=clean_env(LLM_POLICY_ENV="development"),
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        self.token = minted.stdout.strip()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                llm_policy("serve"),
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_ready(self.url, self.proc, self.log)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(60)
        self.proc = None


@pytest.fixture(scope="module")
def policy_server(
    policy_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PolicyServer]:
    server = PolicyServer(policy_dir, tmp_path_factory.mktemp("gateway-server"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class Proxy:
    name: str
    url: str
    proc: subprocess.Popen[bytes]
    log: Path
    trace: Path

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=MASTER_KEY, max_retries=0)


def _proxy_env(upstream: ThreadedFakeUpstream, **settings: str) -> dict[str, str]:
    refused = free_port()  # nothing listens there: a proxy-aware client that leaks fails fast
    env = {
        k: v
        for k, v in clean_env().items()
        if not k.startswith(("LITELLM_", "OPENAI_", "DATABASE_", "POLICY_"))
        and k.upper() not in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
    }
    exports, _ = docs_command()
    assert exports == {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_TELEMETRY_DISABLED": "true"}
    env.update(exports)  # no price map from GitHub, no telemetry
    env.update(
        LITELLM_MASTER_KEY=MASTER_KEY,
        OPENAI_API_BASE=upstream.base_url,
        OPENAI_API_KEY="sk-fake-upstream",
        HTTP_PROXY=f"http://127.0.0.1:{refused}",
        HTTPS_PROXY=f"http://127.0.0.1:{refused}",
        NO_PROXY="127.0.0.1,localhost",
        PYTHONUNBUFFERED="1",
        **settings,
    )
    return env


def _start_proxy(name: str, workdir: Path, env: dict[str, str]) -> Proxy:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.yaml").write_text(docs_config())
    port = free_port()
    _, shown = docs_command()
    command = [str(LITELLM), *[str(port) if a == "4000" else a for a in shown[1:]]]
    assert command[1:] == ["--config", "config.yaml", "--port", str(port), "--host", "127.0.0.1"]
    trace = workdir / "connect.trace"
    strace = shutil.which("strace")
    assert strace, "strace checks that the proxy connects to loopback only"
    traced = [strace, "-f", "-qq", "-e", "signal=none", "-e", "trace=connect,sendto,sendmsg"]
    log = workdir / "proxy.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*traced, "-o", str(trace), *command],
            cwd=workdir,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Proxy(name, f"http://127.0.0.1:{port}", proc, log, trace)


def _wait_live(proxy: Proxy, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proxy.proc.poll() is not None:
            raise RuntimeError(f"the {proxy.name} proxy exited:\n{proxy.log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(f"{proxy.url}/health/liveliness", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the {proxy.name} proxy did not start:\n{proxy.log.read_text()[-4000:]}")


def _stop(proxy: Proxy) -> None:
    if proxy.proc.poll() is None:
        os.killpg(proxy.proc.pid, signal.SIGTERM)
        try:
            proxy.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proxy.proc.pid, signal.SIGKILL)
            proxy.proc.wait(10)


_ADDRESS = re.compile(r'inet_(?:addr|pton)\((?:AF_INET6, )?"([^"]+)"')


def foreign_addresses(trace: Path) -> set[str]:
    """The addresses other than loopback that a traced process tree connected or sent to."""
    found = set(_ADDRESS.findall(trace.read_text(encoding="utf-8", errors="replace")))
    return {a for a in found if not (a.startswith("127.") or a in ("::1", "::ffff:127.0.0.1"))}


@pytest.fixture(scope="module")
def proxies(
    upstream: ThreadedFakeUpstream,
    policy_dir: Path,
    policy_server: PolicyServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, Proxy]]:
    root = tmp_path_factory.mktemp("litellm")
    started = [
        _start_proxy(
            "embedded", root / "embedded", _proxy_env(upstream, POLICY_DIR=str(policy_dir))
        ),
        _start_proxy(
            "remote",
            root / "remote",
            _proxy_env(
                upstream,
                POLICY_SERVER_URL=policy_server.url,
                POLICY_SERVER_TOKEN=policy_server.token,
            ),
        ),
    ]
    try:
        for proxy in started:
            _wait_live(proxy)
        yield {p.name: p for p in started}
    finally:
        for proxy in started:
            _stop(proxy)
    for proxy in started:
        assert proxy.trace.read_text().count("connect(") > 0  # the trace saw the proxy's calls
        assert foreign_addresses(proxy.trace) == set(), f"{proxy.name} left loopback"


@pytest.fixture(params=["embedded", "remote"])
def proxy(request: pytest.FixtureRequest, proxies: dict[str, Proxy]) -> Proxy:
    return proxies[request.param]


def _marker() -> str:
    return uuid.uuid4().hex[:12]


def _arrived(upstream: ThreadedFakeUpstream, marker: str) -> list[dict[str, object]]:
    return [r.body for r in upstream.chat_requests if marker in json.dumps(r.body)]


# --- the scenarios ---------------------------------------------------------------------------


def test_a_denied_request_never_reaches_the_upstream(
    proxy: Proxy, upstream: ThreadedFakeUpstream
) -> None:
    marker = _marker()
    client = proxy.client()
    with pytest.raises(openai.BadRequestError) as denied:
        client.chat.completions.create(
            model="gpt-4o",
            messages=[{"role": "user", "content": f"tell me about project zebra {marker}"}],
            user="mallory",
        )
    assert denied.value.status_code == 400
    assert "Project Zebra is confidential (mallory)" in denied.value.message
    decision_id = denied.value.response.headers["x-llm-policy-decision-id"]
    assert decision_id == denied.value.response.headers["x-litellm-call-id"]
    assert decision_id in denied.value.message
    assert _arrived(upstream, marker) == []


def test_a_modify_reaches_the_upstream_rewritten(
    proxy: Proxy, upstream: ThreadedFakeUpstream
) -> None:
    marker = _marker()
    raw = proxy.client().chat.completions.with_raw_response.create(
        model="gpt-4o",
        messages=[
            {"role": "user", "content": f"[draft] summarise, reply to bob@example.com {marker}"}
        ],
        max_tokens=500,
        user="alice",
    )
    assert raw.parse().choices[0].message.content == upstream.reply.text
    (sent,) = _arrived(upstream, marker)
    assert sent["model"] == "gpt-4o-mini"
    assert sent["max_tokens"] == 16
    content = sent["messages"][-1]["content"]  # type: ignore[index]
    assert "bob@example.com" not in content
    assert content == redact_text(f"[draft] summarise, reply to bob@example.com {marker}")
    assert "llm_policy" not in json.dumps(sent)  # our state stays in the proxy
    assert raw.headers["x-llm-policy-decision"] == "modify"
    assert raw.headers["x-llm-policy-decision-id"] == raw.headers["x-litellm-call-id"]
    assert raw.headers["x-llm-policy-policy-set"]


def test_a_warn_passes_with_its_warnings_in_headers(
    proxy: Proxy, upstream: ThreadedFakeUpstream
) -> None:
    marker = _marker()
    raw = proxy.client().chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": f"[review] hello {marker}"}]
    )
    assert raw.parse().choices[0].message.content == upstream.reply.text
    assert raw.headers["x-llm-policy-decision"] == "warn"
    assert json.loads(raw.headers["x-llm-policy-warnings"]) == ["flagged for review"]
    assert raw.headers["x-llm-policy-response-decision"] == "allow"
    assert len(_arrived(upstream, marker)) == 1


def test_pii_in_a_completion_comes_back_redacted(proxy: Proxy) -> None:
    raw = proxy.client().chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": f"contact? [answer:pii] {_marker()}"}]
    )
    text = raw.parse().choices[0].message.content
    assert text == redact_text(PII_ANSWER)
    assert "jane.doe@example.com" not in text
    assert raw.headers["x-llm-policy-response-decision"] == "warn"
    assert raw.headers["x-llm-policy-response-decision-id"] == (
        raw.headers["x-llm-policy-decision-id"] + ".response"
    )
    assert "PII in the answer was redacted" in json.loads(raw.headers["x-llm-policy-warnings"])


def test_pii_in_a_streamed_completion_comes_back_redacted(proxy: Proxy) -> None:
    raw = proxy.client().chat.completions.with_raw_response.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": f"contact? [answer:pii] {_marker()}"}],
        stream=True,
    )
    assert raw.headers["x-llm-policy-decision"] == "allow"
    chunks = list(raw.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == redact_text(PII_ANSWER)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert all(c.usage is None for c in chunks)  # the client did not ask for usage


def test_a_stream_that_trips_a_deny_is_cut_before_the_span(proxy: Proxy) -> None:
    raw = proxy.client().chat.completions.with_raw_response.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": f"go [answer:launch] {_marker()}"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    received: list[str] = []

    def read() -> None:
        for chunk in raw.parse():
            if chunk.choices and chunk.choices[0].delta.content:
                received.append(chunk.choices[0].delta.content)

    with pytest.raises(openai.APIError) as cut:
        read()
    assert "The answer carries a launch code" in cut.value.message
    assert raw.headers["x-llm-policy-decision-id"] in cut.value.message
    text = "".join(received)
    assert "LAUNCH" not in text
    assert LAUNCH_ANSWER.startswith(text)
    if proxy.name == "embedded":  # the engine's window is the pattern's length: text flows
        assert len(text) > len(FILLER) // 2


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_spend_is_settled_from_the_upstream_usage_and_the_cap_then_denies(
    proxy: Proxy, stream: bool
) -> None:
    user = f"spender-{_marker()}"
    client = proxy.client()
    first = client.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": f"write [answer:costly] {user}"}],
        user=user,
        stream=stream,
    )
    if stream:
        assert "".join(c.choices[0].delta.content or "" for c in first if c.choices)  # type: ignore[union-attr]
    with pytest.raises(openai.BadRequestError) as capped:
        client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "again"}], user=user
        )
    # The reservation (the request's estimate) was replaced by the upstream's usage at
    # gpt-4o's prices: 1,000 prompt and 100,000 completion tokens.
    assert f"{user} spent 1.0025 USD today" in capped.value.message
    other = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hi"}], user=f"frugal-{user}"
    )
    assert other.choices[0].message.content


def test_the_remote_guardrail_fails_closed_when_the_server_is_away(
    proxies: dict[str, Proxy], policy_server: PolicyServer, upstream: ThreadedFakeUpstream
) -> None:
    marker = _marker()
    client = proxies["remote"].client()
    policy_server.stop()
    try:
        with pytest.raises(openai.BadRequestError) as denied:
            client.chat.completions.create(
                model="gpt-4o", messages=[{"role": "user", "content": f"hello {marker}"}]
            )
        assert "failing closed" in denied.value.message
        assert "unreachable" in denied.value.message
        assert _arrived(upstream, marker) == []
    finally:
        policy_server.start()
    assert (
        client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "back"}]
        )
        .choices[0]
        .message.content
    )
