"""The warehouse's schema: include/sql/warehouse/migrations/NNN_name.sql, each applied once, in
order, recorded in `staging.schema_migrations`. A run whose warehouse is up to date runs no DDL
at all, so an analyst's long query on a staging view never stalls a run, and a backfill beside
the scheduled runs never deadlocks with one on DDL.
"""

from __future__ import annotations

import logging
import re

from conveyor import paths, postgres
from conveyor.totesys import warehouse

log = logging.getLogger(__name__)

MIGRATIONS = ("warehouse", "migrations")
MIGRATION_FILE = re.compile(r"(?P<version>\d{3})_[a-z0-9_]+\.sql")
LOCK_TIMEOUT = "10s"  # how long a migration waits for a lock a reader holds before it gives up


def migrations() -> list[tuple[int, str]]:
    """(version, file name) of every migration in include/sql/warehouse/migrations, in order."""
    found = []
    for path in sorted(paths.sql_path(*MIGRATIONS).glob("*.sql")):
        match = MIGRATION_FILE.fullmatch(path.name)
        if not match:  # never skipped in silence: it would not be applied
            raise RuntimeError(f"warehouse migration {path.name!r} is not named NNN_lowercase_words.sql")
        found.append((int(match["version"]), path.name))
    versions = [v for v, _ in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"two warehouse migrations share a number: {[n for _, n in found]}")
    return found


def _applied(conn) -> set[int]:
    if conn.execute("SELECT to_regclass('staging.schema_migrations')").fetchone()[0] is None:
        return set()
    return {v for (v,) in conn.execute("SELECT version FROM staging.schema_migrations")}


def migrate(conn) -> list[str]:
    """Apply the migrations this warehouse lacks, in order, in one transaction; returns their names.

    Up to date (every run but the first after a deploy): one read of the version table and no
    DDL, so nothing waits on a lock a reader holds. Two runs that migrate at once take turns
    (an advisory lock); the second finds nothing left to do. A failing migration applies nothing.
    """
    pending = [(v, name) for v, name in migrations() if v not in _applied(conn)]
    conn.commit()  # end the read's transaction: nothing to hold while a run goes on
    if not pending:
        return []
    done = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('conveyor.warehouse.migrate'))")
        # DDL waits for the locks readers hold, and every reader then queues behind it: give up
        # after a while instead (the task retries) rather than stall the tables for everyone.
        conn.execute("SELECT set_config('lock_timeout', %s, true)", (LOCK_TIMEOUT,))
        conn.execute("CREATE SCHEMA IF NOT EXISTS staging")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS staging.schema_migrations (version integer PRIMARY KEY, "
            "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        applied = _applied(conn)  # again, under the lock: another run may have applied them
        for version, name in pending:
            if version in applied:
                continue
            conn.execute(paths.sql_path(*MIGRATIONS, name).read_text())
            conn.execute(
                "INSERT INTO staging.schema_migrations (version, name) VALUES (%s, %s)", (version, name)
            )
            done.append(name)
    for name in done:
        log.info("warehouse migration applied: %s", name)
    return done


def prepare_warehouse(conn_id: str, statement_timeout) -> dict:
    """What a run needs before it lands: the operators' sessions keep the statement timeout
    (`postgres.SessionSettingsLost` if not: the connection must change), the migrations the
    warehouse lacks (none, on most runs), ISO 4217 currency names refreshed."""
    timeout = postgres.check_operator_sessions(conn_id, statement_timeout)
    with postgres.connect(conn_id, statement_timeout) as conn:
        return {
            "migrations": migrate(conn),
            "currency_names": warehouse.load_currency_names(conn),
            "operator_statement_timeout": timeout,
        }
