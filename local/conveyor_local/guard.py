"""Fail fast when the local stack is down.

`make services` writes `$AIRFLOW_HOME/config/airflow_local_settings.py`, which Airflow imports in
every process it starts (CLI, scheduler, task runners), to call `require_running()`. Against a
stopped stack a command then stops at once with what to do, instead of retrying connections for
minutes. Standard library only: this runs before every Airflow command.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

DOWN = "the local stack is down: run `make services`"


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _unix_listening(path: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(1)
            s.connect(str(path))
            return True
    except OSError:
        return False


def problems(local_dir: Path) -> list[str]:
    """What of the stack recorded in `local_dir/stack.json` does not answer (empty: all is up)."""
    try:
        state = json.loads((local_dir / "stack.json").read_text())
    except (OSError, ValueError):
        return [f"no stack recorded in {local_dir}"]
    found = []
    port = state.get("moto", {}).get("port")
    if not (port and state["moto"].get("pid") and _listening("127.0.0.1", int(port))):
        found.append("moto is not running")
    postgres = state.get("postgres")
    if not postgres or not _postgres_listening(postgres["dsn"]):
        found.append("Postgres is not running")
    return found


def _postgres_listening(dsn: str) -> bool:
    """Whether the server of a `postgresql://…` DSN answers: its Unix socket (a `host=/dir`, as
    the embedded server's; pgserver may move it out of a long data directory) or host:port."""
    from urllib.parse import parse_qs, unquote, urlsplit

    parts = urlsplit(dsn)
    query = parse_qs(parts.query)
    host = query.get("host", [unquote(parts.hostname or "")])[0] or "localhost"
    port = int(query.get("port", [parts.port or 5432])[0])
    if host.startswith("/"):
        return _unix_listening(Path(host) / f".s.PGSQL.{port}")
    return _listening(host, port)


def require_running() -> None:
    """Exit with a clear message when the stack named by CONVEYOR_LOCAL_DIR is down."""
    local_dir = os.environ.get("CONVEYOR_LOCAL_DIR")
    if not local_dir or os.environ.get("CONVEYOR_SKIP_STACK_CHECK"):
        return
    found = problems(Path(local_dir))
    if found:
        sys.exit(f"{DOWN} ({'; '.join(found)})")
