"""The no-Docker local stack: a moto server, an embedded Postgres and a fake Snowflake (fakesnow's
server, reading S3 from moto) on loopback, plus Airflow.

State lives in `.local/` (override with CONVEYOR_LOCAL_DIR): `stack.json` records what this
project started (pids, ports, data dirs) so `stop` stops exactly that and `start` again is
harmless. `env.sh` exports what Airflow needs: AIRFLOW_HOME, its metadata in the `airflow`
database of the same Postgres (as MWAA keeps it in Postgres; SQLite cannot take a backfill while
the scheduler runs), the LocalExecutor sized to the machine, the dags/plugins folders, and the
connections as AIRFLOW_CONN_* variables.

What survives `stop` and `start`: Postgres's data (ToteSys, the warehouse, Airflow's runs) and the
ports. moto and the fake Snowflake keep nothing: `start` provisions the AWS resources and the
Snowflake objects (what `snowflake_setup` creates) again and reseeds the sample files.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from conveyor import resources
from conveyor.paths import PROJECT_ROOT
from conveyor_local.provision import provision

DATABASES = ("totesys", "warehouse")  # the pipelines' own
AIRFLOW_DATABASE = "airflow"  # Airflow's metadata
ACCESS_KEY = "testing"  # moto accepts any key; these are not secrets


def local_dir() -> Path:
    return Path(os.environ.get("CONVEYOR_LOCAL_DIR", PROJECT_ROOT / ".local")).resolve()


def _state_path() -> Path:
    return local_dir() / "stack.json"


def load_state() -> dict:
    path = _state_path()
    return json.loads(path.read_text()) if path.exists() else {}


def _save_state(state: dict) -> None:
    local_dir().mkdir(parents=True, exist_ok=True)
    _state_path().write_text(json.dumps(state, indent=2))


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); treat it as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _wait_http(url: str, timeout: float, what: str, log: Path, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}; see {log}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answers (the fake Snowflake has no page at /)
        except OSError:
            time.sleep(0.25)
    raise RuntimeError(f"{what} did not answer on {url} within {timeout:.0f}s; see {log}")


# --- moto -------------------------------------------------------------------------------------


def moto_endpoint(state: dict) -> str:
    return f"http://127.0.0.1:{state['moto']['port']}"


def _start_moto(state: dict) -> None:
    _launch(
        state,
        "moto",
        lambda port: [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        health_path="/moto-api/",
        timeout=30,
        preferred_port=int(os.environ.get("CONVEYOR_MOTO_PORT", 0)),
    )


def _launch(state, name: str, command, health_path: str, timeout: float, preferred_port: int = 0) -> None:
    """Start a server of the stack in the background (unless its recorded pid lives), on the port
    it had before (connections point there) unless that is taken; record it in `state[name]`."""
    if _alive(state.get(name, {}).get("pid")):
        return
    port = preferred_port or state.get(name, {}).get("port")
    if port and not _port_free(port):
        print(
            f"port {port}, where {name} listened before, is taken: {name} moves (run `make services` again)"
        )
        port = None
    port = port or free_port()
    log = local_dir() / f"{name}.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(command(port), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    state[name] = {"pid": proc.pid, "port": port, "log": str(log)}
    _wait_http(f"http://127.0.0.1:{port}{health_path}", timeout, name, log, proc)


# --- the fake Snowflake -------------------------------------------------------------------------


def _start_snowflake(state: dict) -> None:
    _launch(
        state,
        "snowflake",
        lambda port: [
            *(sys.executable, "-m", "conveyor_local.fake_snowflake", "--port", str(port)),
            *(
                "--s3-endpoint",
                moto_endpoint(state),
                "--aws-key",
                ACCESS_KEY,
                "--region",
                resources.DEFAULT_REGION,
            ),
        ],
        health_path="/",
        timeout=60,
    )


def _provision_snowflake(state: dict) -> None:
    """What `snowflake_setup` creates (its default Params), on the fake: the same files, in order."""
    from conveyor_local import fake_snowflake

    with fake_snowflake.connect(state["snowflake"]["port"]) as connection:
        fake_snowflake.apply_setup(connection)


# --- Postgres ---------------------------------------------------------------------------------


def _start_postgres(state: dict) -> None:
    user_dsn = os.environ.get("CONVEYOR_POSTGRES_DSN")
    if user_dsn:
        state["postgres"] = {"dsn": user_dsn, "managed": False}
    else:
        import pgserver

        logging.getLogger("pgserver").setLevel(logging.WARNING)
        pgdata = local_dir() / "pgdata"
        pgdata.mkdir(parents=True, exist_ok=True)
        server = pgserver.get_server(pgdata, cleanup_mode=None)  # keeps running after we exit
        state["postgres"] = {"dsn": server.get_uri("postgres"), "pgdata": str(pgdata), "managed": True}
    _create_databases(state["postgres"]["dsn"])


def _create_databases(admin_dsn: str) -> None:
    import psycopg

    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        existing = {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
        for name in (*DATABASES, AIRFLOW_DATABASE):
            if name not in existing:
                conn.execute(f'CREATE DATABASE "{name}"')


def postgres_dsn(state: dict, database: str) -> str:
    """The admin DSN with its database swapped for `database`."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(state["postgres"]["dsn"])
    params["dbname"] = database
    return make_conninfo(**params)


def airflow_db_url(state: dict) -> str:
    """SQLAlchemy URL of Airflow's metadata database (psycopg2; Airflow derives asyncpg from it)."""
    from psycopg.conninfo import conninfo_to_dict
    from sqlalchemy.engine import URL

    params = conninfo_to_dict(postgres_dsn(state, AIRFLOW_DATABASE))
    host = params.get("host")
    unix_socket = bool(host and host.startswith("/"))  # a socket directory goes in the query
    # sslmode, sslrootcert, connect_timeout, ... as the DSN has them
    query = {k: v for k, v in params.items() if k not in ("host", "port", "user", "password", "dbname")}
    if unix_socket:
        query["host"] = host
    return URL.create(
        "postgresql",
        username=params.get("user"),
        password=params.get("password") or None,
        host=None if unix_socket else host,
        port=int(params["port"]) if params.get("port") and not unix_socket else None,
        database=AIRFLOW_DATABASE,
        query=query,
    ).render_as_string(hide_password=False)


def parallelism() -> int:
    """Task slots for the LocalExecutor: two per core, at least four (Airflow's default is 32)."""
    return max(4, 2 * (os.cpu_count() or 1))


def _postgres_connection(state: dict, database: str) -> dict:
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(postgres_dsn(state, database))
    return {
        "conn_type": "postgres",
        "host": params.get("host", "127.0.0.1"),  # a directory here means a Unix socket
        "port": int(params.get("port", 5432)),
        "login": params.get("user", "postgres"),
        "password": params.get("password", ""),
        "schema": database,
    }


def _stop_postgres(state: dict) -> None:
    pg = state.get("postgres", {})
    if not pg.get("managed") or not Path(pg.get("pgdata", "/nonexistent"), "postmaster.pid").exists():
        return
    import pgserver

    user = "pgserver" if os.geteuid() == 0 else None  # pgserver runs the server as this user under root
    pgserver.pg_ctl(["-m", "fast", "-w", "stop"], pgdata=Path(pg["pgdata"]), user=user)


# --- Airflow ----------------------------------------------------------------------------------


def airflow_home() -> Path:
    return local_dir() / "airflow"


def environment(state: dict) -> dict[str, str]:
    """Every variable `env.sh` exports."""
    endpoint = moto_endpoint(state)
    home = airflow_home()
    aws = {
        "conn_type": "aws",
        "login": ACCESS_KEY,
        "password": ACCESS_KEY,
        "extra": {"endpoint_url": endpoint, "region_name": resources.DEFAULT_REGION},
    }
    port = state.get("airflow", {}).get("port", 8080)
    env = {
        "CONVEYOR_LOCAL_DIR": str(local_dir()),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": airflow_db_url(state),
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": str(parallelism()),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
        # Noise that is not the user's concern: graph rendering (`airflow dags show`) is unused, and
        # the amazon provider's own use of a deprecated Airflow API is for its maintainers to fix.
        "PYTHONWARNINGS": "ignore:Could not import graphviz,ignore:ProvidersManager.hooks is deprecated",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__HOST": "127.0.0.1",
        # Links Airflow builds (an alert's log_url) point at the port actually served.
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": ACCESS_KEY,
        "AWS_DEFAULT_REGION": resources.DEFAULT_REGION,
        "AWS_ENDPOINT_URL": endpoint,
        f"AIRFLOW_CONN_{resources.AWS_CONN_ID.upper()}": json.dumps(aws),
        f"AIRFLOW_VAR_{resources.PREFIX_VARIABLE.upper()}": resources.DEFAULT_PREFIX,
    }
    for conn_id, database in (
        (resources.TOTESYS_CONN_ID, "totesys"),
        (resources.WAREHOUSE_CONN_ID, "warehouse"),
    ):
        env[f"AIRFLOW_CONN_{conn_id.upper()}"] = json.dumps(_postgres_connection(state, database))
    if port := state.get("snowflake", {}).get("port"):
        from conveyor_local.fake_snowflake import connection

        env[f"AIRFLOW_CONN_{resources.SNOWFLAKE_CONN_ID.upper()}"] = json.dumps(connection(port))
    return env


def _write_env_sh(state: dict) -> Path:
    path = local_dir() / "env.sh"
    lines = [
        "# Written by `make services`; `source .local/env.sh` to use the local stack.",
        f'export PATH={shlex.quote(str(Path(sys.executable).parent))}:"$PATH"',
    ]
    lines += [f"export {key}={shlex.quote(value)}" for key, value in environment(state).items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def _airflow(args: list[str], env: dict[str, str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), *args], env={**os.environ, **env}, **kwargs
    )


LOCAL_SETTINGS = """\
# Written by `make services`: Airflow imports this in every process; against a stopped local
# stack, a command stops at once saying so instead of retrying connections for minutes.
from conveyor_local import botocore_models
from conveyor_local.guard import require_running
from conveyor_local.fake_snowflake import route_http_when_imported

require_running()
# snowflake_default points at the fake Snowflake on loopback, which speaks http (see the module).
route_http_when_imported()
# One parsed copy of each botocore model per process, not one per AWS hook (see the module).
botocore_models.share()
"""


def _write_local_settings() -> None:
    config = airflow_home() / "config"
    config.mkdir(parents=True, exist_ok=True)
    (config / "airflow_local_settings.py").write_text(LOCAL_SETTINGS)


def _airflow_checked(args: list[str], state: dict, what: str) -> None:
    result = _airflow(args, environment(state), capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"{what} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")


def _migrate_airflow_db(state: dict) -> bool:
    """Migrate Airflow's metadata database when it is new or Airflow was upgraded (True if it did)."""
    import airflow
    import psycopg

    home = airflow_home()
    home.mkdir(parents=True, exist_ok=True)
    stamp = home / ".migrated"
    with psycopg.connect(postgres_dsn(state, AIRFLOW_DATABASE)) as conn:
        migrated = conn.execute("SELECT to_regclass('public.alembic_version') IS NOT NULL").fetchone()[0]
    if migrated and stamp.exists() and stamp.read_text() == airflow.__version__:
        return False
    _airflow_checked(["db", "migrate"], state, "airflow db migrate")
    stamp.write_text(airflow.__version__)
    return True


def _code_digest() -> str:
    """Changes when any DAG, plugin or include file does (path, size and mtime)."""
    import hashlib

    digest = hashlib.sha256()
    for folder in ("dags", "plugins", "include"):
        for path in sorted((PROJECT_ROOT / folder).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                stat = path.stat()
                digest.update(
                    f"{path.relative_to(PROJECT_ROOT)} {stat.st_size} {stat.st_mtime_ns}\n".encode()
                )
    return digest.hexdigest()


def _serialize_dags(state: dict, migrated: bool) -> None:
    """Parse the DAGs into the metadata DB now, so `airflow dags list` and the UI show them at once
    (again only when the code changed, or the database is new)."""
    stamp = airflow_home() / ".serialized"
    digest = _code_digest()
    if not migrated and stamp.exists() and stamp.read_text() == digest:
        return
    _airflow_checked(["dags", "reserialize"], state, "airflow dags reserialize")
    stamp.write_text(digest)


def seed(force: bool = False, state: dict | None = None) -> list[str]:
    """Load the sample data that is missing (all of it with `force`); print what was loaded."""
    from conveyor_local.seed import seed as load

    state = state or load_state()
    if not _alive(state.get("moto", {}).get("pid")):
        raise SystemExit("the local stack is not running: run `make services`")
    s3 = _endpoint_session(moto_endpoint(state)).client("s3")
    loaded = load(s3, state["aws"]["buckets"]["source"], postgres_dsn(state, "totesys"), force=force)
    for line in loaded:
        print(f"sample data: {line}")
    return loaded


# --- commands ---------------------------------------------------------------------------------


def start() -> dict:
    """Start (or find running) moto and Postgres, provision AWS resources, write env.sh."""
    local_dir().mkdir(parents=True, exist_ok=True)
    state = load_state()
    was_running = _alive(state.get("moto", {}).get("pid"))
    _start_moto(state)
    _start_postgres(state)
    _save_state(state)
    state["aws"] = provision_endpoint(moto_endpoint(state))
    _start_snowflake(state)
    _save_state(state)
    _provision_snowflake(state)  # rerunnable, so new objects of updated code appear on a running stack
    env_sh = _write_env_sh(state)
    # Airflow's own commands only once the stack answers (they check it; see guard.py).
    _write_local_settings()
    _serialize_dags(state, migrated=_migrate_airflow_db(state))
    seed(state=state)
    print(
        f"local stack {'already running' if was_running else 'started'}: moto on {moto_endpoint(state)}, "
        f"a fake Snowflake (fakesnow) on 127.0.0.1:{state['snowflake']['port']}, "
        f"Postgres databases {', '.join(DATABASES)} and {AIRFLOW_DATABASE} (Airflow's metadata, "
        f"LocalExecutor with {parallelism()} slots); Airflow home {airflow_home()}\n"
        f"use it with:  source {os.path.relpath(env_sh)}"
    )
    return state


def provision_endpoint(endpoint_url: str) -> dict:
    """Provision every AWS resource at `endpoint_url` (moto server, LocalStack, a container)."""
    for _ in range(60):  # a container may still be starting
        try:
            urllib.request.urlopen(endpoint_url, timeout=2)
            break
        except urllib.error.HTTPError:
            break  # it answers
        except OSError:
            time.sleep(1)
    return provision(_endpoint_session(endpoint_url))


def _endpoint_session(endpoint_url: str) -> _EndpointSession:
    import boto3

    session = boto3.Session(
        aws_access_key_id=ACCESS_KEY, aws_secret_access_key=ACCESS_KEY, region_name=resources.DEFAULT_REGION
    )
    return _EndpointSession(session, endpoint_url)


class _EndpointSession:
    """A boto3 session whose clients all talk to the moto server."""

    def __init__(self, session, endpoint: str):
        self._session, self._endpoint = session, endpoint
        self.region_name = session.region_name

    def client(self, service: str):
        return self._session.client(service, endpoint_url=self._endpoint)


def stop() -> None:
    state = load_state()
    stopped = []
    for name in ("airflow", "snowflake", "moto"):
        pid = state.get(name, {}).get("pid")
        if _alive(pid):
            os.killpg(pid, signal.SIGTERM)
            for _ in range(100):
                if not _alive(pid):
                    break
                time.sleep(0.1)
            else:
                os.killpg(pid, signal.SIGKILL)
            stopped.append(name)
        if name in state:  # the port stays: the next start listens where connections point
            state[name] = {"port": state[name]["port"]} if "port" in state[name] else {}
    if state.get("postgres", {}).get("managed"):
        _stop_postgres(state)
        stopped.append("postgres")
    state.pop("postgres", None)
    _save_state(state)
    print(f"stopped: {', '.join(stopped) or 'nothing was running'}")


def describe() -> dict:
    state = load_state()
    if not _alive(state.get("moto", {}).get("pid")):
        raise SystemExit("the local stack is not running: run `make services`")
    return {
        "endpoint_url": moto_endpoint(state),
        **state["aws"],
        "connections": {
            "aws": resources.AWS_CONN_ID,
            "totesys": resources.TOTESYS_CONN_ID,
            "warehouse": resources.WAREHOUSE_CONN_ID,
            "snowflake": resources.SNOWFLAKE_CONN_ID,
        },
        "snowflake": {"port": state.get("snowflake", {}).get("port")},
        "postgres": {database: postgres_dsn(state, database) for database in (*DATABASES, AIRFLOW_DATABASE)},
        "airflow_home": str(airflow_home()),
        "env_sh": str(local_dir() / "env.sh"),
    }


def require_free_port(port: int) -> None:
    """Refuse to start Airflow on a port something already listens on: its api-server would fail
    to bind while the health check answered from the other server."""
    if not _port_free(port):
        raise SystemExit(
            f"port {port} is already taken (another Airflow, or `make compose-up`?), so this "
            f"Airflow could not serve on it. Stop what listens there, or pick a free port: "
            f"CONVEYOR_AIRFLOW_PORT={port + 1} make airflow"
        )


def run_airflow_ui() -> None:
    """Start `airflow standalone` in the background on the stack; print the URL and login."""
    port = int(os.environ.get("CONVEYOR_AIRFLOW_PORT", 8080))
    ours = load_state().get("airflow", {})
    if not (_alive(ours.get("pid")) and ours.get("port") == port):
        require_free_port(port)
    state = start()
    url = f"http://127.0.0.1:{port}"
    home = airflow_home()
    passwords = home / "passwords.json"
    if not passwords.exists():
        passwords.write_text(json.dumps({"admin": secrets.token_urlsafe(12)}))
    password = json.loads(passwords.read_text())["admin"]
    airflow_state = state.get("airflow", {})
    if not (_alive(airflow_state.get("pid")) and airflow_state.get("port") == port):
        state["airflow"] = {"port": port}
        _write_env_sh(state)
        log = local_dir() / "airflow-standalone.log"
        with log.open("ab") as out:
            env = {**os.environ, **environment(state)}
            # standalone starts its components as `airflow …` from PATH: this virtualenv's.
            env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
            proc = subprocess.Popen(
                [str(Path(sys.executable).parent / "airflow"), "standalone"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        state["airflow"] = {"pid": proc.pid, "port": port, "log": str(log)}
        _save_state(state)
        print(f"starting airflow standalone (log: {log}) ...")
        _wait_http(f"{url}/api/v2/monitor/health", 180, "airflow standalone", log, proc)
    from conveyor_local.airflow_api import AirflowAPI, AirflowAPIError

    api = AirflowAPI(url, "admin", password)
    api.wait_until_healthy()  # scheduler, triggerer, dag-processor
    try:  # the server answering is this one: it accepts this stack's password
        api.dags()
    except AirflowAPIError as e:
        raise SystemExit(
            f"the Airflow answering on {url} refused this stack's login ({e}): it is not the one "
            f"`make airflow` started (see {local_dir() / 'airflow-standalone.log'}). Stop the other "
            f"server, or pick a free port: CONVEYOR_AIRFLOW_PORT={port + 1} make airflow"
        ) from None
    print(f"Airflow UI: {url}  login: admin / {password}\nstop it with: make services-stop")
