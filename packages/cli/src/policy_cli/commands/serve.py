"""`llm-policy serve` (HTTP) and `llm-policy grpc serve`."""

from __future__ import annotations

import asyncio
import os
import shlex
import socket
import sys
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager
from pathlib import Path
from typing import Any

import click
import msgspec

from policy_cli.commands.common import core_error
from policy_cli.commands.token import token_for
from policy_cli.errors import CliError, ExitCode
from policy_cli.settings import Settings, env_name
from policy_cli.state import State, pass_state, run_async

__all__ = ["grpc", "serve"]

_APP = "policy_cli.asgi:create_app_from_env"


def _mapped(exc: Exception) -> Exception:
    return core_error(exc) or exc


@contextmanager
def _embedded_for(settings: Settings) -> Iterator[Settings]:
    """Settings whose database is reachable by every worker; the embedded server if needed.

    The parent process starts (and finally stops) the embedded PostgreSQL, so
    that workers share one server instead of racing to start it.
    """
    if settings.deployment != "single" or settings.database_url:
        yield settings
        return
    from policy_cli.wiring import start_embedded

    stack = AsyncExitStack()
    url = run_async(start_embedded(settings, stack))
    try:
        yield msgspec.structs.replace(settings, database_url=url)
    finally:
        run_async(stack.aclose())


def _json_logs(settings: Settings) -> None:
    """Every log line of the parent process JSON too (the store's driver, the embedded
    PostgreSQL's pg_ctl, granian): the workers configure theirs in policy_cli.asgi."""
    import logging.config

    from policy_http.logs import stdlib_json_config

    logging.config.dictConfig(stdlib_json_config(settings.log_level))


def _prepare(settings: Settings) -> None:
    """Migrate and seed once, in the parent, before workers start (they would race)."""
    from policy_cli.bootstrap import bootstrap

    async def go() -> None:
        async with bootstrap(settings):
            pass

    try:
        run_async(go())
    except CliError:
        raise
    except Exception as exc:
        raise _mapped(exc) from None


def _worker_environment(settings: Settings) -> dict[str, str]:
    """LLM_POLICY_* variables that give each worker the parent's effective settings."""
    env: dict[str, str] = {}
    for name, value in msgspec.structs.asdict(settings).items():
        if value is None:
            env[env_name(name)] = ""  # empty means unset (and hides an inherited value)
        elif isinstance(value, bool):
            env[env_name(name)] = "true" if value else "false"
        else:
            env[env_name(name)] = str(value)
    if settings.deployment != "memory":
        # Done once by the parent; a worker only opens the store.
        env[env_name("migrate_on_start")] = "false"
        env[env_name("seed_policies")] = ""
    return env


def _with_metrics_dir(settings: Settings) -> Settings:
    """Several workers share /metrics through prometheus_client's multiprocess files.

    Without LLM_POLICY_METRICS_DIR they go to `<data_dir>/metrics`. Files of an
    earlier run are removed: they would add old counts to the new ones.
    """
    if settings.workers <= 1 and not settings.metrics_dir:
        return settings
    root = Path(settings.metrics_dir or Path(settings.data_dir) / "metrics").resolve()
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob("*.db"):
        stale.unlink()
    return msgspec.structs.replace(settings, metrics_dir=str(root))


def _check_port(host: str, port: int, flag: str) -> None:
    """Fail with a clear line (not the server's backtrace) when the port is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise CliError(
                f"cannot listen on {host}:{port}: {exc.strerror}",
                ExitCode.USAGE,
                hint=f"choose another {flag} (or LLM_POLICY_PORT), or stop what uses this one",
            ) from None


def _base_url(settings: Settings) -> str:
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host  # noqa: S104
    return f"http://{host}:{settings.port}"


def store_label(settings: Settings) -> str:
    """Where this deployment keeps its policies, for people."""
    if settings.deployment == "memory":
        return "in memory: gone at exit"
    if settings.database_url:
        return "PostgreSQL"
    return f"embedded PostgreSQL in {settings.data_dir}"


def banner(settings: Settings, store: str) -> str:
    """What `serve` prints first: where the API is, its docs, and (in development) a token."""
    url = _base_url(settings)
    lines = [
        f"LLM Policy Engine ({settings.env}, {settings.deployment} deployment, policies {store})",
        f"  API:      {url}/api/v1",
        f"  OpenAPI:  {url}/schema/swagger   (JSON: {url}/schema/openapi.json)",
        f"  Ready:    {url}/ready   Metrics: {url}/metrics",
    ]
    if settings.development and settings.effective_jwt_secret():  # not with JWKS only
        token = token_for(settings)  # the very token `llm-policy token` prints
        ctx = (
            '{"context": {"user": {"id": "u1", "permissions": ["llm.access"]}, '
            '"team": {"id": "t1", "tier": "pro"}, "llm": {"model": "gpt-4o-mini", "prompt": "Hello"}}}'
        )
        lines += [
            "",
            "Development token (role admin, valid 24 h):",
            f"  export TOKEN={token}",
            "Try it:",
            f'  curl -s {url}/api/v1/evaluate -H "Authorization: Bearer $TOKEN" \\',
            f"    -H 'Content-Type: application/json' -d {shlex.quote(ctx)}",
        ]
    return "\n".join(lines)


@click.command()
@click.option("--host", help="Interface to listen on (LLM_POLICY_HOST, default 127.0.0.1).")
@click.option("--port", type=int, help="TCP port (LLM_POLICY_PORT, default 8080).")
@click.option("--workers", type=int, help="Worker processes (LLM_POLICY_WORKERS, default 1).")
@click.option(
    "--seed",
    "seed_policies",
    metavar="PATH",
    help="Load these policies when the store is empty (LLM_POLICY_SEED_POLICIES).",
)
@click.option(
    "--server-impl",
    type=click.Choice(["uvicorn", "granian"]),
    default="uvicorn",
    show_default=True,
    help="The ASGI server.",
)
@pass_state
def serve(state: State, /, server_impl: str, **flags: Any) -> None:
    """Run the HTTP API on the configured deployment until SIGINT/SIGTERM.

    Refuses to start outside development without LLM_POLICY_JWT_SECRET or
    LLM_POLICY_JWKS_FILE. With LLM_POLICY_ENV=development it prints an admin
    token and a curl command to try the API.
    """
    settings = state.load(serving=True, **flags)
    if settings.deployment != "memory" or settings.workers <= 1:
        # prometheus_client picks its value class when first imported (the JSON logging
        # below imports it) and granian forks the workers from this process: the
        # multiprocess directory must be in the environment before that, or every worker
        # counts in memory and /metrics sums no files.
        settings = _with_metrics_dir(settings)
        if settings.metrics_dir:
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = settings.metrics_dir
    _json_logs(settings)
    if settings.deployment == "memory" and settings.workers > 1:
        raise CliError(
            "the memory deployment keeps its state per process: it cannot run several workers",
            ExitCode.USAGE,
            hint="use --workers 1, or the single or cluster deployment",
        )
    _check_port(settings.host, settings.port, "--port")
    from policy_cli.runner import run_asgi

    store = store_label(settings)
    with _embedded_for(settings) as effective:
        if effective.deployment != "memory":
            _prepare(effective)
        effective = _with_metrics_dir(effective)
        os.environ.update(_worker_environment(effective))
        if effective.metrics_dir:
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = effective.metrics_dir
        click.echo(banner(effective, store))
        sys.stdout.flush()
        run_asgi(
            _APP,
            host=effective.host,
            port=effective.port,
            workers=effective.workers,
            impl="granian" if server_impl == "granian" else "uvicorn",
            log_level=effective.log_level,
        )


@click.group("grpc")
def grpc() -> None:
    """The gRPC API."""


@grpc.command("serve")
@click.option("--host", "grpc_host", help="Interface (LLM_POLICY_GRPC_HOST, default 127.0.0.1).")
@click.option("--port", "grpc_port", type=int, help="Port (LLM_POLICY_GRPC_PORT, default 50051).")
@click.option("--seed", "seed_policies", metavar="PATH", help="Load into an empty store.")
@pass_state
def grpc_serve(state: State, /, **flags: Any) -> None:
    """Run the gRPC API (PolicyService, Health, reflection) until SIGINT/SIGTERM."""
    settings = state.load(serving=True, **flags)
    _json_logs(settings)  # one JSON object per line, as the HTTP server's
    from policy_grpc import serve as serve_grpc

    from policy_cli.api_settings import grpc_settings
    from policy_cli.bootstrap import bootstrap

    async def go() -> None:
        async with bootstrap(settings) as services:
            click.echo(
                f"LLM Policy Engine gRPC API on {settings.grpc_host}:{settings.grpc_port} "
                f"({settings.env}, {settings.deployment} deployment)"
            )
            sys.stdout.flush()
            await serve_grpc(
                services, grpc_settings(settings), settings.grpc_host, settings.grpc_port
            )

    try:
        asyncio.run(go())
    except CliError:
        raise
    except OSError as exc:
        raise CliError(
            f"cannot listen on {settings.grpc_host}:{settings.grpc_port}: {exc.strerror}",
            ExitCode.USAGE,
            hint="choose another --port, or stop what uses this one",
        ) from None
    except Exception as exc:
        raise _mapped(exc) from None
