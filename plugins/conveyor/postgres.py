"""Postgres connections for tasks: through the provider's PostgresHook (psycopg 3), so every
connection extra (`sslmode`, `sslrootcert`, `connect_timeout`, `application_name`, ...) is
honoured as Airflow documents it, with the session's statement timeout and time zone set.

Operators that open their own connections (`SQLExecuteQueryOperator`, the check operators) get
the same session settings through `hook_params(...)`: libpq's `options` at connection start.
"""

from __future__ import annotations

from datetime import timedelta


class SourceUnavailable(RuntimeError):
    """The database could not be reached or a statement timed out; a retry may succeed."""


def session_options(statement_timeout: timedelta) -> str:
    """libpq `options` that start a session with the statement timeout and UTC as its time zone."""
    return f"-c statement_timeout={int(statement_timeout.total_seconds() * 1000)} -c TimeZone=UTC"


def hook_params(statement_timeout: timedelta) -> dict:
    """`hook_params` for the common-sql operators on a Postgres connection: the same session as
    `connect` gives (a connection whose extra sets its own `options` replaces these)."""
    return {"options": session_options(statement_timeout)}


def connect(conn_id: str, statement_timeout: timedelta = timedelta(minutes=15)):
    """A psycopg 3 connection for an Airflow connection id: UTC session, statements time-limited.

    A database that cannot be reached raises SourceUnavailable naming the connection (the task
    retries); the statement timeout is a session setting, so it holds for every statement.
    """
    import psycopg
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    hook = PostgresHook(postgres_conn_id=conn_id)
    try:
        conn = hook.get_conn()
    except psycopg.OperationalError as exc:
        c = hook.connection
        raise SourceUnavailable(
            f"cannot connect to {conn_id!r} (host {c.host}, port {c.port or 5432}, database {c.schema}): "
            f"{str(exc).strip()}"
        ) from exc
    if not isinstance(conn, psycopg.Connection):
        conn.close()
        raise RuntimeError("PostgresHook returned a psycopg2 connection; Conveyor needs psycopg 3")
    conn.execute(
        "SELECT set_config('statement_timeout', %s, false), set_config('TimeZone', 'UTC', false)",
        (f"{int(statement_timeout.total_seconds() * 1000)}ms",),
    )
    conn.commit()  # session settings outlive this transaction
    return conn


def statement_timed_out(exc: BaseException) -> bool:
    """True when `exc` is Postgres cancelling a statement (statement_timeout)."""
    import psycopg

    return isinstance(exc, psycopg.errors.QueryCanceled)


class SessionSettingsLost(RuntimeError):
    """The connection's own settings replace the session options Conveyor gives the operators."""


def check_operator_sessions(conn_id: str, statement_timeout: timedelta) -> str:
    """Open a session as the common-sql operators do (`hook_params`) and check it has a statement
    timeout; returns it. A connection whose extra sets its own `options` replaces Conveyor's, and
    a pooler may drop startup options: the operators' statements would then run unbounded.
    """
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    hook = PostgresHook(postgres_conn_id=conn_id, **hook_params(statement_timeout))
    with hook.get_conn() as conn:
        timeout = conn.execute("SELECT current_setting('statement_timeout')").fetchone()[0]
    if timeout in ("0", "0ms"):
        raise SessionSettingsLost(
            f"sessions on {conn_id!r} opened by the model and check operators have no statement timeout: "
            f"the connection's extra `options` ({hook.connection.extra_dejson.get('options')!r}) replaces "
            f"Conveyor's {session_options(statement_timeout)!r}, or a pooler drops startup options. Add "
            f"`-c statement_timeout={int(statement_timeout.total_seconds() * 1000)}` to the extra's options, "
            "or set it on the role (ALTER ROLE ... SET statement_timeout = ...)."
        )
    return timeout
