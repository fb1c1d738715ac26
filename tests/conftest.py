"""Test harness: an isolated Airflow (SQLite metadata DB) and AWS through moto.

Airflow reads its configuration when first imported, so the environment is set here, at the top
of the first module pytest loads. Nothing in the tests talks to a real AWS account or to a local
stack started by `make services`: the variables that would point there are removed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_RUN_DIR = Path(tempfile.mkdtemp(prefix="conveyor-tests-"))
_CACHE_DIR = ROOT / ".local" / "test-cache"
REGION = "eu-west-2"

for _key in list(os.environ):
    if _key.startswith(("AIRFLOW_CONN_", "AIRFLOW_VAR_", "AIRFLOW__")) or _key in (
        "AWS_ENDPOINT_URL",
        "AWS_PROFILE",
        "AWS_SESSION_TOKEN",
        "CONVEYOR_LOCAL_DIR",
        "CONVEYOR_POSTGRES_DSN",
    ):
        del os.environ[_key]

AIRFLOW_ENV = {
    "AIRFLOW_HOME": str(_RUN_DIR / "airflow"),
    "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
    "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
    "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{_RUN_DIR / 'airflow' / 'airflow.db'}",
    "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AIRFLOW_CONN_AWS_DEFAULT": json.dumps({"conn_type": "aws", "extra": {"region_name": REGION}}),
}
os.environ.update(AIRFLOW_ENV)


def _migrated_db() -> None:
    """Copy a migrated metadata DB into place; migrate once per Airflow version and cache it."""
    from importlib.metadata import version

    cached = _CACHE_DIR / f"airflow-{version('apache-airflow-core')}.db"
    if not cached.exists():
        _CACHE_DIR.mkdir(parents=True, exist_ok=True)
        scratch = f"{cached}.{os.getpid()}.tmp"  # `make test`'s workers may both get here
        subprocess.run(
            [str(Path(sys.executable).parent / "airflow"), "db", "migrate"],
            check=True,
            capture_output=True,
            env={**os.environ, "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{scratch}"},
        )
        Path(scratch).replace(cached)  # atomic: a parallel worker that migrated too writes the same
    (_RUN_DIR / "airflow").mkdir(parents=True, exist_ok=True)
    shutil.copy(cached, _RUN_DIR / "airflow" / "airflow.db")


_migrated_db()

from conveyor_local import botocore_models  # noqa: E402

# Each botocore model file parsed once per test process, not once per hook (see the module).
botocore_models.share()

import boto3  # noqa: E402
import pytest  # noqa: E402
from moto import mock_aws  # noqa: E402

from conveyor_local.provision import provision  # noqa: E402
from conveyor_local.stack import free_port  # noqa: E402


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_RUN_DIR, ignore_errors=True)


@pytest.fixture
def aws():
    """moto in-process, provisioned like the local stack; yields the resource description."""
    with mock_aws():
        session = boto3.Session(region_name=REGION)
        description = provision(session)
        description["session"] = session
        yield description


class _AtEndpoint:
    """A boto3 session whose clients all talk to one endpoint (a moto server)."""

    region_name = REGION

    def __init__(self, endpoint: str):
        self.endpoint = endpoint
        self._session = boto3.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
        )

    def client(self, name: str):
        return self._session.client(name, endpoint_url=self.endpoint)


@pytest.fixture
def moto_server(monkeypatch):
    """A moto server on loopback, provisioned like the local stack, with aws_default pointing at it.

    For what the in-process mock cannot intercept: aiobotocore (deferrable sensors' triggers).
    """
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        session = _AtEndpoint(endpoint)
        description = provision(session)
        description["session"] = session
        description["endpoint_url"] = endpoint
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        monkeypatch.setenv(
            "AIRFLOW_CONN_AWS_DEFAULT",
            json.dumps({"conn_type": "aws", "extra": {"endpoint_url": endpoint, "region_name": REGION}}),
        )
        yield description
    finally:
        import urllib.request

        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"))
        server.stop()


@pytest.fixture(scope="session")
def _fake_snowflake_port():
    from conveyor_local import fake_snowflake

    port = free_port()
    stop = fake_snowflake.serve_in_thread(port)
    fake_snowflake.route_http()
    yield port
    stop()


@pytest.fixture
def snowflake_conn(_fake_snowflake_port, moto_server, monkeypatch):
    """A new, empty fake Snowflake (fakesnow's server, with the local stack's COPY INTO additions)
    reading S3 from this test's moto server; `snowflake_default` points at it. Yields a function
    that opens a DB-API connection to it."""
    from conveyor_local import fake_snowflake

    fake_snowflake.reset(moto_server["endpoint_url"], "testing", "testing", REGION)
    monkeypatch.setenv(
        "AIRFLOW_CONN_SNOWFLAKE_DEFAULT", json.dumps(fake_snowflake.connection(_fake_snowflake_port))
    )
    yield lambda: fake_snowflake.connect(_fake_snowflake_port)


@pytest.fixture(scope="session")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert not bag.import_errors, bag.import_errors
    return bag


def run_dag(dag_id: str, logical_date=None, **conf):
    """Run a DAG through Airflow (`dag.test()`, real metadata DB) on a freshly parsed DAG.

    Fresh, because dag.test() writes a run's conf into the in-memory tasks' params (each real
    task process parses afresh), so reusing one DAG object would leak Params across runs.
    """
    from airflow.dag_processing.dagbag import DagBag

    dag = DagBag(dag_folder=str(ROOT / "dags" / f"{dag_id}.py")).get_dag(dag_id)
    # Airflow 3.3.1's dag.test() fails a successful run's end on a DAG with a deadline and never
    # checks one (conveyor.deadlines.under_dags_test): deadlines are the real scheduler's
    # (tests/scheduler/test_deadlines_scheduler.py).
    dag.deadline = None
    return dag.test(logical_date=logical_date, run_conf=conf or None)


def task_states(dag_run) -> dict[str, list[str]]:
    """{task_id: [state of each map index]} for a finished run."""
    states: dict[str, list[str]] = {}
    for ti in sorted(dag_run.get_task_instances(), key=lambda t: (t.task_id, t.map_index)):
        states.setdefault(ti.task_id, []).append(ti.state)
    return states


@pytest.fixture(autouse=True)
def short_retry_delays(monkeypatch):
    """dag.test() sleeps through retry delays: keep retries, but seconds apart, not minutes.

    An unexpected failure then costs seconds, not the 1 + 2 minute backoff it would under the
    real defaults (a broken change once made CI wait out 24 minutes of retries).
    """
    from datetime import timedelta

    from conveyor import defaults

    monkeypatch.setitem(defaults.DEFAULT_ARGS, "retry_delay", timedelta(seconds=1))
    monkeypatch.setitem(defaults.DEFAULT_ARGS, "max_retry_delay", timedelta(seconds=2))


@pytest.fixture
def no_retries(monkeypatch):
    """dag.test() waits out retry delays: make failures final (the parse reads DEFAULT_ARGS)."""
    from conveyor import defaults

    monkeypatch.setitem(defaults.DEFAULT_ARGS, "retries", 0)


def read_messages(session, queue_url: str) -> list[dict]:
    """Drain a queue subscribed to an SNS topic; returns the SNS envelopes (JSON-decoded)."""
    sqs = session.client("sqs")
    messages = []
    while True:
        batch = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get(
            "Messages", []
        )
        if not batch:
            return messages
        for message in batch:
            messages.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


@pytest.fixture(scope="session")
def postgres_admin_dsn(tmp_path_factory):
    """A real Postgres server for the session (embedded pgserver; no root or Docker needed).

    CONVEYOR_TEST_POSTGRES_DSN points the tests at another server instead.
    """
    dsn = os.environ.get("CONVEYOR_TEST_POSTGRES_DSN")
    if dsn:
        yield dsn
        return
    import logging

    import pgserver

    logging.getLogger("pgserver").setLevel(logging.WARNING)
    server = pgserver.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="stop")
    yield server.get_uri("postgres")
    server.cleanup()


@contextmanager
def _fresh_database(admin_dsn: str, monkeypatch, conn_id: str):
    """A new, empty database; AIRFLOW_CONN_<conn_id> points at it. Yields its DSN."""
    import uuid

    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    params = conninfo_to_dict(admin_dsn)
    params["dbname"] = name
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{conn_id.upper()}",
        json.dumps(
            {
                "conn_type": "postgres",
                "host": params.get("host"),
                "port": int(params.get("port", 5432)),
                "login": params.get("user"),
                "password": params.get("password", ""),
                "schema": name,
            }
        ),
    )
    try:
        yield make_conninfo(**params)
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_database(postgres_admin_dsn, monkeypatch):
    """A fresh, empty database as the ToteSys source (connection totesys_db). Yields its DSN."""
    with _fresh_database(postgres_admin_dsn, monkeypatch, "totesys_db") as dsn:
        yield dsn


@pytest.fixture
def warehouse_dsn(postgres_admin_dsn, monkeypatch):
    """A fresh, empty database as the warehouse (connection warehouse_db). Yields its DSN."""
    with _fresh_database(postgres_admin_dsn, monkeypatch, "warehouse_db") as dsn:
        yield dsn


EVENT_COPY_DEADLINE_S = 120  # s3_event_copy's deadline under the session's scheduler


@pytest.fixture(scope="session")
def airflow():
    """One Airflow for every scheduler test module (`-m scheduler`): `make airflow` on a stack of
    its own (free ports, a temporary CONVEYOR_LOCAL_DIR), started once per session (about 45 s)
    and stopped afterwards. (The UI tests start their own.)

    `s3_event_copy`'s deadline is 2 min (`conveyor.s3_event_copy_deadline_seconds`), so
    tests/scheduler/test_deadlines_scheduler.py sees one pass within minutes.

    `totesys_etl` runs every minute here (its cron is an Airflow config option), so a scheduled
    run comes within a minute, and a task retries after 5 s, then 10 s
    (`conveyor.retry_delay_seconds`), so a run that fails for good does so in seconds. Every DAG
    starts paused: a test unpauses the DAGs it drives and pauses them again when it is done, so
    modules do not feed each other runs.

    The executor is `make airflow`'s: the LocalExecutor, or with CONVEYOR_EXECUTOR=celery the
    CeleryExecutor with Redis and two workers (`.ci/run` runs these tests so). There a task whose
    worker died is failed by the scheduler after 30 s without a heartbeat
    (`[scheduler] task_instance_heartbeat_timeout`, 300 s by default and on MWAA), and retried.
    """
    from conveyor_local.airflow_api import scratch_airflow

    with scratch_airflow(**_SCHEDULER_TEST_CONFIG) as scratch:
        yield scratch


_SCHEDULER_TEST_CONFIG = {
    "AIRFLOW__CONVEYOR__TOTESYS_CRON": "* * * * *",
    "AIRFLOW__CONVEYOR__RETRY_DELAY_SECONDS": "5",
    "AIRFLOW__CONVEYOR__S3_EVENT_COPY_DEADLINE_SECONDS": str(EVENT_COPY_DEADLINE_S),
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
}


@pytest.fixture(scope="module")
def celery_airflow(request):
    """The session's `airflow` when it runs the CeleryExecutor (CONVEYOR_EXECUTOR=celery, as
    `.ci/run` runs the scheduler tests), else one of the module's own with it, configured alike:
    for tests about Celery workers themselves."""
    if os.environ.get("CONVEYOR_EXECUTOR", "").strip().lower() == "celery":
        yield request.getfixturevalue("airflow")
        return
    from conveyor_local.airflow_api import scratch_airflow

    with scratch_airflow(CONVEYOR_EXECUTOR="celery", **_SCHEDULER_TEST_CONFIG) as scratch:
        yield scratch
