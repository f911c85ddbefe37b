"""The registry database: engine setup (SQLite WAL + busy timeout, PostgreSQL), migrations to head under a
lock, transactions with retry, and the one place SQLAlchemy / driver errors become Conveyor errors.
"""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import create_engine, event, exc, text
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.orm import Session

from conveyor import errors

T = TypeVar("T")

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Arbitrary constant shared by every Conveyor process: serializes schema upgrades on PostgreSQL.
_MIGRATION_LOCK_KEY = 0x636F6E7665796F72 & 0x7FFFFFFFFFFFFFFF
_SQLITE_BUSY_TIMEOUT_S = 30.0
_RETRYABLE_PG_STATES = {"40001", "40P01"}  # serialization failure, deadlock detected


class Database:
    """One engine per registry; ``transaction`` runs a function in a read or write transaction."""

    def __init__(self, url: str) -> None:
        self.url = _normalize(url)
        self.display_url = self.url.render_as_string(hide_password=True)
        self.dialect = self.url.get_backend_name()
        if self.dialect not in ("sqlite", "postgresql"):
            raise errors.InvalidInput(
                f"unsupported registry database URL {self.display_url}: use sqlite:/// or postgresql://"
            )
        try:
            if self.dialect == "sqlite":
                self.engine = create_engine(self.url, connect_args={"timeout": _SQLITE_BUSY_TIMEOUT_S})
                _install_sqlite_hooks(self.engine)
            else:
                connect_args: dict[str, Any] = {"connect_timeout": 10} if self.dialect == "postgresql" else {}
                self.engine = create_engine(self.url, pool_pre_ping=True, connect_args=connect_args)
        except (exc.ArgumentError, exc.NoSuchModuleError) as e:
            raise errors.InvalidInput(f"invalid registry database URL {self.display_url}: {e}") from None
        # Write transactions on SQLite start with BEGIN IMMEDIATE: writers queue on the busy timeout
        # instead of failing when a read lock would need upgrading.
        self._write_engine = self.engine.execution_options(conveyor_write=True)

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    def upgrade(self) -> None:
        """Migrate the schema to head; safe when several processes open a fresh database at once.

        A database already at head (every open but the first after an upgrade of Conveyor) is told by one
        read of ``alembic_version``: loading alembic and every migration script, and taking the write lock
        to ask alembic, cost each ``conveyor`` command about a second."""
        if self._at_head():
            return
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        with self.translate(), self._write_engine.connect() as conn, conn.begin():
            # Both locks are held until commit: SQLite's by BEGIN IMMEDIATE, PostgreSQL's advisory lock here.
            if self.is_postgres:
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK_KEY})
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def _at_head(self) -> bool:
        try:
            with self.engine.connect() as conn:
                found = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
        except exc.SQLAlchemyError:  # a new database (no table yet), or one this read cannot judge
            return False
        return found == [head_revision()]

    def transaction(self, fn: Callable[[Session], T], *, write: bool = False, retries: int = 0) -> T:
        """Run ``fn(session)`` in one transaction; retry unique violations / serialization failures."""
        engine = self._write_engine if write else self.engine
        attempt = 0
        while True:
            try:
                with (
                    self.translate(retryable=attempt < retries),
                    Session(engine, expire_on_commit=False) as session,
                    session.begin(),
                ):
                    return fn(session)
            except _Retry:
                attempt += 1
                time.sleep(random.uniform(0.005, 0.05) * attempt)

    @contextmanager
    def translate(self, *, retryable: bool = False) -> Iterator[None]:
        """Turn SQLAlchemy and driver errors into the Conveyor error tree (``_Retry`` when retryable)."""
        try:
            yield
        except exc.IntegrityError as e:
            if retryable:
                raise _Retry from e
            raise errors.Conflict(f"registry write conflicted with another change: {_reason(e)}") from e
        except (exc.OperationalError, exc.InterfaceError) as e:
            if retryable and _is_transient(e):
                raise _Retry from e
            full = _disk_full_reason(e)
            if full is not None:  # the database is intact: the transaction rolled back
                raise errors.DiskFull(
                    f"disk full: no room for the registry database at {self.display_url} ({full})"
                ) from e
            raise errors.Unavailable(
                f"cannot reach the registry database at {self.display_url}: {_reason(e)}"
            ) from e
        except exc.SQLAlchemyError as e:
            raise errors.ConveyorError(f"registry database error at {self.display_url}: {_reason(e)}") from e

    def dispose(self) -> None:
        self.engine.dispose()


class _Retry(Exception):
    """Internal: the transaction lost a race and should run again."""


def _normalize(url: str) -> URL:
    try:
        u = make_url(url)
    except exc.ArgumentError as e:
        raise errors.InvalidInput(f"invalid registry database URL: {e}") from None
    if u.drivername == "postgresql":
        u = u.set(drivername="postgresql+psycopg")  # the driver Conveyor ships with
    return u


def _reason(e: exc.SQLAlchemyError) -> str:
    orig = getattr(e, "orig", None)
    msg = str(orig) if orig is not None else str(e)
    return msg.strip().splitlines()[0] if msg.strip() else type(e).__name__


def _is_transient(e: exc.DBAPIError) -> bool:
    state = getattr(e.orig, "sqlstate", None)
    return state in _RETRYABLE_PG_STATES or "database is locked" in str(e.orig)


def _disk_full_reason(e: exc.DBAPIError) -> str | None:
    """Why the database has no room, or None when the error is something else."""
    name = getattr(e.orig, "sqlite_errorname", None)
    if name == "SQLITE_IOERR_SHMSIZE":
        # SQLite says "disk I/O error": opening a WAL database that no other process holds open creates its
        # shared-memory file (32 KiB), so on a full disk even a read fails.
        return "SQLite needs 32 KiB free to open it"
    if name == "SQLITE_FULL" or getattr(e.orig, "sqlstate", None) == "53100":  # PostgreSQL's disk_full
        return _reason(e)
    return None


def _install_sqlite_hooks(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" hook below emit BEGIN instead of pysqlite's own transaction handling.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout = {int(_SQLITE_BUSY_TIMEOUT_S * 1000)}")
            cur.execute("PRAGMA foreign_keys = ON")
            cur.execute("PRAGMA synchronous = NORMAL")
            _enable_wal(cur)
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("conveyor_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _enable_wal(cur: Any) -> None:
    # WAL is a property of the file: switch once. Two processes opening a fresh file may both try, and the
    # switch can report "locked" without waiting on the busy timeout, so retry for a while.
    deadline = time.monotonic() + _SQLITE_BUSY_TIMEOUT_S
    while True:
        mode = cur.execute("PRAGMA journal_mode").fetchone()[0]
        if str(mode).lower() in ("wal", "memory"):
            return
        try:
            cur.execute("PRAGMA journal_mode = WAL")
            return
        except Exception as e:  # sqlite3.OperationalError: database is locked
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(random.uniform(0.01, 0.05))


@functools.cache
def head_revision() -> str:
    """The newest migration's revision, from the file names (``NNNN_what.py`` holds revision ``"NNNN"``, one
    line of history), known without loading alembic; a test pins it to alembic's own answer."""
    return max(p.name[:4] for p in (MIGRATIONS_DIR / "versions").glob("[0-9][0-9][0-9][0-9]_*.py"))
