"""The no-Docker local stack: a moto server, an embedded Postgres and a fake Snowflake (fakesnow's
server, reading S3 from moto) on loopback, plus Airflow.

State lives in `.local/` (override with CONVEYOR_LOCAL_DIR): `stack.json` records what this
project started (pids, ports, data dirs) so `stop` stops exactly that and `start` again is
harmless. `env.sh` exports what Airflow needs: AIRFLOW_HOME, its metadata in the `airflow`
database of the same Postgres (as MWAA keeps it in Postgres; SQLite cannot take a backfill while
the scheduler runs), the LocalExecutor sized to the machine (or with CONVEYOR_EXECUTOR=celery the
CeleryExecutor, its Redis broker and its workers: see "Celery workers" below), the dags/plugins
folders, and the connections as AIRFLOW_CONN_* variables.

What survives `stop` and `start`: Postgres's data (ToteSys, the warehouse, Airflow's runs) and the
ports. moto and the fake Snowflake keep nothing: `start` provisions the AWS resources and the
Snowflake objects (what `snowflake_setup` creates) again and reseeds the sample files.
"""

from __future__ import annotations

import contextlib
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


def _launch(
    state, name: str, command, health_path: str | None, timeout: float, preferred_port: int = 0, probe=None
) -> None:
    """Start a server of the stack in the background (unless its recorded pid lives), on the port
    it had before (connections point there) unless that is taken; record it in `state[name]`.
    Ready when `health_path` answers over http, or `probe(port)` returns True."""
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
    if probe is None:
        _wait_http(f"http://127.0.0.1:{port}{health_path}", timeout, name, log, proc)
        return
    deadline = time.monotonic() + timeout
    while not probe(port):
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}; see {log}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not answer on port {port} within {timeout:.0f}s; see {log}")
        time.sleep(0.1)


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


# --- Redis, the Celery broker (CONVEYOR_EXECUTOR=celery) -----------------------------------------

EXECUTORS = {"local": "LocalExecutor", "celery": "CeleryExecutor"}
# Celery workers the stack starts: at least two, so a task whose worker dies can run on another.
CELERY_WORKERS = int(os.environ.get("CONVEYOR_CELERY_WORKERS", 2))
# Task slots per worker ([celery] worker_concurrency): 5, MWAA's mw1.small's, so two workers are
# terraform/environments/dev.tfvars' environment at its maximum (core.parallelism 10).
CELERY_WORKER_CONCURRENCY = int(os.environ.get("CONVEYOR_CELERY_WORKER_CONCURRENCY", 5))
LOGS_BUCKET = "conveyor-local-airflow-logs"  # the workers' task logs (MWAA sends them to CloudWatch)


def executor() -> str:
    """`local` (the default: it starts faster) or `celery`, from CONVEYOR_EXECUTOR."""
    name = os.environ.get("CONVEYOR_EXECUTOR", "").strip().lower() or "local"
    if name not in EXECUTORS:
        raise SystemExit(f"CONVEYOR_EXECUTOR={name!r} is not one of: {', '.join(EXECUTORS)}")
    return name


def ensure_redis_server() -> str:
    """The `redis-server` executable, installing Debian's package if missing (as root, or with
    password-less sudo), as `make test-ui` installs Chromium."""
    import shutil

    from conveyor_local import debian

    def find() -> str | None:
        return shutil.which("redis-server") or shutil.which("redis-server", path="/usr/sbin:/usr/bin")

    if path := find():
        return path
    try:
        return debian.install("redis-server", find, "the Celery broker")
    except debian.NotInstalled as exc:
        raise SystemExit(f"CONVEYOR_EXECUTOR=celery needs redis-server: {exc}") from None


def _redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _start_redis(state: dict) -> None:
    """Redis on loopback, keeping nothing on disk: queued messages die with it, and the scheduler
    queues a task again after `[scheduler] task_queued_timeout`."""
    server = ensure_redis_server()
    data = local_dir() / "redis"
    data.mkdir(parents=True, exist_ok=True)
    _launch(
        state,
        "redis",
        lambda port: [
            *(server, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(data)),
            *("--save", "", "--appendonly", "no", "--daemonize", "no"),
        ],
        health_path=None,
        timeout=30,
        probe=_redis_answers,
    )


def broker_url(state: dict) -> str:
    return f"redis://127.0.0.1:{state['redis']['port']}/0"


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
        "AIRFLOW__CORE__EXECUTOR": EXECUTORS[state.get("executor", "local")],
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
    if state.get("executor") == "celery":
        env.update(celery_environment(state))
    return env


def celery_environment(state: dict) -> dict[str, str]:
    """The CeleryExecutor's settings, the same for the scheduler and every worker (on MWAA: the
    environment's airflow_configuration_options, which reach every component)."""
    from sqlalchemy.engine import make_url

    result_db = make_url(airflow_db_url(state)).set(drivername="db+postgresql")
    return {
        "AIRFLOW__CELERY__BROKER_URL": broker_url(state),
        # Celery's task states in Airflow's metadata database, as MWAA keeps them.
        "AIRFLOW__CELERY__RESULT_BACKEND": result_db.render_as_string(hide_password=False),
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(CELERY_WORKER_CONCURRENCY),
        # Celery acknowledges a message when its task ends ([celery] task_acks_late, Airflow's
        # default), so a message whose worker died goes back on the queue after this long. The
        # scheduler has long since failed that try (task_instance_heartbeat_timeout) and queued
        # the next; a redelivered old try is refused by the execution API and ignored.
        "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "86400",
        # Slots across the workers, as MWAA's core.parallelism is (max workers x concurrency).
        "AIRFLOW__CORE__PARALLELISM": str(CELERY_WORKERS * CELERY_WORKER_CONCURRENCY),
        # Each worker's task logs go to S3 (moto) when a try ends, and the UI reads them there: a
        # worker's files are its own (MWAA sends them to CloudWatch Logs).
        "AIRFLOW__LOGGING__REMOTE_LOGGING": "True",
        "AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER": f"s3://{LOGS_BUCKET}/logs",
        "AIRFLOW__LOGGING__REMOTE_LOG_CONN_ID": resources.AWS_CONN_ID,
    }


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


# --- Celery workers (CONVEYOR_EXECUTOR=celery) ---------------------------------------------------

CELERY_COMPONENTS = ("scheduler", "dag-processor", "api-server", "triggerer")

WORKER_LOCAL_SETTINGS = """\
# Written by the local stack for this Celery worker: its only local-only code, from copies beside
# this file (never the checkout). The fake Snowflake on loopback speaks http (MWAA's workers reach
# Snowflake over https); one parsed copy of each botocore model per process.
from conveyor_local_shims import botocore_models
from conveyor_local_shims.fake_snowflake import route_http_when_imported

route_http_when_imported()
botocore_models.share()
"""

WORKER_HOSTNAME = """\
# [core] hostname_callable of this worker: the name a task try records as its hostname.
import os


def hostname() -> str:
    return os.environ["CONVEYOR_WORKER_NAME"]
"""


def workers_dir() -> Path:
    return local_dir() / "workers"


def _build_worker(name: str, dist: Path) -> Path:
    """A worker's directory as MWAA builds a worker's container: its own AIRFLOW_HOME whose dags/
    is a copy of the packaged DAGs folder and plugins/ the packaged plugins.zip unzipped (on
    sys.path, as MWAA puts it), rebuilt from `dist` on every start."""
    import shutil
    import zipfile

    root = workers_dir() / name
    shutil.rmtree(root, ignore_errors=True)
    home = root / "airflow"
    shutil.copytree(dist / "dags", home / "dags")
    with zipfile.ZipFile(dist / "plugins.zip") as zf:
        zf.extractall(home / "plugins")
    shims = home / "config" / "conveyor_local_shims"
    shims.mkdir(parents=True)
    (shims / "__init__.py").write_text("")
    here = Path(__file__).parent
    for module in ("fake_snowflake.py", "botocore_models.py"):
        shutil.copy(here / module, shims / module)
    (home / "config" / "airflow_local_settings.py").write_text(WORKER_LOCAL_SETTINGS)
    (home / "config" / "conveyor_worker.py").write_text(WORKER_HOSTNAME)
    return root


def worker_environment(state: dict, name: str, root: Path) -> dict[str, str]:
    """Everything a worker process gets, and nothing else: the Airflow configuration every
    component shares (the executor, broker, metadata DB, execution API, remote logs, the
    conveyor.* options), the connections and Variables of the stack's secrets backend (the
    environment), AWS credentials (MWAA's execution role), and paths inside its own directory. No
    PYTHONPATH, no path into the checkout or the scheduler's AIRFLOW_HOME."""
    home = root / "airflow"
    shared = {**{k: v for k, v in os.environ.items() if k.startswith("AIRFLOW__")}, **environment(state)}
    env = {
        k: v
        for k, v in shared.items()
        if k.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_", "AWS_"))
        and k != "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"
    }
    env.update(
        PATH=f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
        HOME=str(root),
        LANG="C.UTF-8",
        TMPDIR=str(root / "tmp"),
        PYTHONWARNINGS=shared.get("PYTHONWARNINGS", ""),
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(home / "dags"),
        AIRFLOW__CORE__PLUGINS_FOLDER=str(home / "plugins"),
        AIRFLOW__LOGGING__BASE_LOG_FOLDER=str(home / "logs"),
        AIRFLOW__CORE__HOSTNAME_CALLABLE="conveyor_worker.hostname",
        CONVEYOR_WORKER_NAME=name,
    )
    return env


def _worker_python() -> Path:
    """The workers' interpreter: a virtualenv whose only content is a path to this one's
    site-packages, so they import the same packages, installed from requirements.txt under MWAA's
    constraints, without this virtualenv's conveyor.pth (which puts the checkout's plugins/ and
    local/ on sys.path for the scheduler, the tests and the tools)."""
    import sysconfig

    venv = workers_dir() / "venv"
    site_packages = sysconfig.get_paths()["purelib"]
    pth = Path(sysconfig.get_paths(vars={"base": str(venv), "platbase": str(venv)})["purelib"]) / "mwaa.pth"
    if not (pth.exists() and pth.read_text().strip() == site_packages):
        subprocess.run([sys.executable, "-m", "venv", "--clear", "--without-pip", str(venv)], check=True)
        pth.write_text(site_packages + "\n")
    return venv / "bin" / "python"


def _wait_for_workers(state: dict, timeout: float = 120) -> None:
    """Until every worker answers a Celery ping (it consumes from the broker)."""
    names = {f"{w['name']}@{socket.gethostname()}" for w in state["workers"]}
    deadline = time.monotonic() + timeout
    env = {**os.environ, **environment(state)}
    while True:
        for worker in state["workers"]:
            if not _alive(worker["pid"]):
                raise RuntimeError(f"Celery {worker['name']} exited; see {worker['log']}")
        pinged = subprocess.run(
            [str(_worker_python()), "-c", _PING, broker_url(state)], env=env, capture_output=True, text=True
        )
        answered = set(pinged.stdout.split())
        if names <= answered:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"Celery workers {sorted(names - answered)} did not answer within {timeout:.0f}s; "
                f"see {', '.join(w['log'] for w in state['workers'])}"
            )
        time.sleep(1)


_PING = """\
import sys
from celery import Celery
replies = Celery(broker=sys.argv[1]).control.ping(timeout=1.0) or []
print(" ".join(name for reply in replies for name in reply))
"""


def start_workers(state: dict) -> list[dict]:
    """Start CELERY_WORKERS `airflow celery worker` processes (those not running), each in a
    session of its own (a container: `kill_session` takes it and its task processes away), its
    cwd its own directory, built from the packaged artefacts (`conveyor_local.package`, as `make package`)."""
    from conveyor_local import package

    running = [w for w in state.get("workers", []) if _alive(w["pid"])]
    if len(running) >= CELERY_WORKERS:
        return running
    dist = local_dir() / "dist"
    package.build(out=dist)
    names = {w["name"] for w in running}
    python = _worker_python()
    for index in range(1, CELERY_WORKERS + 1):
        name = f"worker-{index}"
        if name in names:
            continue
        root = _build_worker(name, dist)
        (root / "tmp").mkdir()
        env = worker_environment(state, name, root)
        log = local_dir() / f"{name}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                # --skip-serve-logs: task logs are read from S3, as MWAA's from CloudWatch Logs.
                [
                    str(python),
                    "-m",
                    "airflow",
                    "celery",
                    "worker",
                    "--celery-hostname",
                    f"{name}@%h",
                    "--skip-serve-logs",
                ],
                cwd=root,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        running.append({"name": name, "pid": proc.pid, "dir": str(root), "log": str(log)})
    state["workers"] = running
    _save_state(state)
    _wait_for_workers(state)
    return running


# --- commands ---------------------------------------------------------------------------------


def start() -> dict:
    """Start (or find running) moto and Postgres, provision AWS resources, write env.sh."""
    local_dir().mkdir(parents=True, exist_ok=True)
    state = load_state()
    was_running = _alive(state.get("moto", {}).get("pid"))
    running = state.get("airflow", {})
    # env.sh says what the running Airflow uses; another executor needs `make services-stop` first.
    state["executor"] = running.get("executor", "local") if _alive(running.get("pid")) else executor()
    _start_moto(state)
    _start_postgres(state)
    if state["executor"] == "celery":
        _start_redis(state)
    _save_state(state)
    state["aws"] = provision_endpoint(moto_endpoint(state))
    if state["executor"] == "celery":
        s3 = _endpoint_session(moto_endpoint(state)).client("s3")
        if LOGS_BUCKET not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
            s3.create_bucket(
                Bucket=LOGS_BUCKET, CreateBucketConfiguration={"LocationConstraint": resources.DEFAULT_REGION}
            )
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
        f"{_executor_summary(state)}); Airflow home {airflow_home()}\n"
        f"use it with:  source {os.path.relpath(env_sh)}"
    )
    return state


def _executor_summary(state: dict) -> str:
    if state.get("executor") == "celery":
        return (
            f"CeleryExecutor: Redis on {broker_url(state)}, {CELERY_WORKERS} workers of "
            f"{CELERY_WORKER_CONCURRENCY} slots with `make airflow`"
        )
    return f"LocalExecutor with {parallelism()} slots"


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


def session_pids(sid: int) -> list[int]:
    """Every process of session `sid`: a worker and all it started (its task processes run in
    process groups of their own, within its session)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids


def kill_session(sid: int, sig: int) -> list[int]:
    """Send `sig` to every process of session `sid` (a worker's, like stopping its container)."""
    pids = session_pids(sid)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    return pids


def _kill_group(pid: int) -> None:
    """SIGTERM the process group `pid` leads; SIGKILL it if it lives on after 10 s."""
    os.killpg(pid, signal.SIGTERM)
    for _ in range(100):
        if not _alive(pid):
            return
        time.sleep(0.1)
    os.killpg(pid, signal.SIGKILL)


def stop() -> None:
    state = load_state()
    stopped = []
    for worker in state.pop("workers", []):
        if _alive(worker["pid"]):
            _kill_group(worker["pid"])
            stopped.append(worker["name"])
        kill_session(worker["pid"], signal.SIGKILL)  # task processes in groups of their own
    for name in ("airflow", "redis", "snowflake", "moto"):
        pid = state.get(name, {}).get("pid")
        if _alive(pid):
            _kill_group(pid)
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
    """Start Airflow in the background on the stack; print the URL and login. The LocalExecutor
    (`airflow standalone`), or with CONVEYOR_EXECUTOR=celery the CeleryExecutor: each component
    and CELERY_WORKERS workers (`start_workers`)."""
    port = int(os.environ.get("CONVEYOR_AIRFLOW_PORT", 8080))
    ours = load_state().get("airflow", {})
    if not (_alive(ours.get("pid")) and ours.get("port") == port):
        require_free_port(port)
    elif ours.get("executor", "local") != executor():
        raise SystemExit(
            f"Airflow runs here with the {EXECUTORS[ours.get('executor', 'local')]}: stop it first "
            f"(make services-stop) to start it with the {EXECUTORS[executor()]}"
        )
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
        env = {**os.environ, **environment(state)}
        # standalone starts its components as `airflow …` from PATH: this virtualenv's.
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        if state["executor"] == "celery":
            log = local_dir() / "airflow-components.log"
            # `airflow standalone` runs only a local executor: each component on its own, in one
            # process group (`make services-stop` stops them together).
            command = ["/bin/sh", "-c", " & ".join(f"airflow {c}" for c in CELERY_COMPONENTS) + " & wait"]
        else:
            log = local_dir() / "airflow-standalone.log"
            command = [str(Path(sys.executable).parent / "airflow"), "standalone"]
        with log.open("ab") as out:
            proc = subprocess.Popen(
                command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        state["airflow"] = {"pid": proc.pid, "port": port, "log": str(log), "executor": state["executor"]}
        _save_state(state)
        print(f"starting airflow ({EXECUTORS[state['executor']]}; log: {log}) ...")
        _wait_http(f"{url}/api/v2/monitor/health", 180, "airflow", log, proc)
    if state["executor"] == "celery":
        start_workers(state)
    from conveyor_local.airflow_api import AirflowAPI, AirflowAPIError

    api = AirflowAPI(url, "admin", password)
    api.wait_until_healthy()  # scheduler, triggerer, dag-processor
    try:  # the server answering is this one: it accepts this stack's password
        api.dags()
    except AirflowAPIError as e:
        raise SystemExit(
            f"the Airflow answering on {url} refused this stack's login ({e}): it is not the one "
            f"`make airflow` started (see {state['airflow']['log']}). Stop the other "
            f"server, or pick a free port: CONVEYOR_AIRFLOW_PORT={port + 1} make airflow"
        ) from None
    print(f"Airflow UI: {url}  login: admin / {password}\nstop it with: make services-stop")
