"""The no-Docker local stack end to end: start, describe, start again, run a DAG via the CLI, stop.

Runs the real processes (moto server, embedded Postgres, `airflow dags test`) in a temporary
CONVEYOR_LOCAL_DIR, so it never touches a stack the developer has running.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote_plus

import boto3
import psycopg
import pytest

from conveyor_local import sample_data

# One worker of `make test` runs the whole module: its stack fixture is built once, not per worker.
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("local_stack")]

ROOT = Path(__file__).resolve().parents[2]


def _clean_env(local_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "AWS_"))}
    env["CONVEYOR_LOCAL_DIR"] = str(local_dir)
    return env


def conveyor_local(local_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "conveyor_local", *args],
        env=_clean_env(local_dir),
        capture_output=True,
        text=True,
        timeout=300,
    )


def in_stack_shell(local_dir: Path, script: str) -> subprocess.CompletedProcess:
    """Run `script` in bash after `source .local/env.sh`, as the README tells users to."""
    return subprocess.run(
        ["bash", "-c", f"source {local_dir / 'env.sh'} && {script}"],
        env=_clean_env(local_dir),
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().split()[2] != "Z"


@pytest.fixture(scope="module")
def local_stack(tmp_path_factory):
    local_dir = tmp_path_factory.mktemp("stack")
    started = conveyor_local(local_dir, "start")
    assert started.returncode == 0, started.stdout + started.stderr
    yield local_dir
    conveyor_local(local_dir, "stop")


def test_describe_names_every_resource_and_they_exist(local_stack):
    described = conveyor_local(local_stack, "describe")
    assert described.returncode == 0, described.stderr
    info = json.loads(described.stdout)
    assert set(info["buckets"]) >= {
        "source",
        "raw",
        "curated",
        "inbound",
        "stage",
        "archive",
        "ingestion",
        "processed",
    }
    assert info["connections"] == {
        "aws": "aws_default",
        "totesys": "totesys_db",
        "warehouse": "warehouse_db",
        "snowflake": "snowflake_default",
    }

    session = boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=info["region"]
    )
    s3 = session.client("s3", endpoint_url=info["endpoint_url"])
    sqs = session.client("sqs", endpoint_url=info["endpoint_url"])
    assert {b["Name"] for b in s3.list_buckets()["Buckets"]} >= set(info["buckets"].values())

    attributes = sqs.get_queue_attributes(QueueUrl=info["queues"]["raw-events"], AttributeNames=["All"])[
        "Attributes"
    ]
    redrive = json.loads(attributes["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"].endswith(":conveyor-local-raw-events-dlq")
    assert int(redrive["maxReceiveCount"]) == 5

    # The notification chain works like AWS: an object in raw -> SNS -> the raw-events queue.
    s3.put_object(Bucket=info["buckets"]["raw"], Key="events/probe/a b.json", Body=b"{}")
    bodies = [
        json.loads(m["Body"])
        for m in sqs.receive_message(QueueUrl=info["queues"]["raw-events"], MaxNumberOfMessages=10).get(
            "Messages", []
        )
    ]
    events = [json.loads(b["Message"]) for b in bodies if b.get("Type") == "Notification"]
    keys = [unquote_plus(r["s3"]["object"]["key"]) for e in events for r in e.get("Records", [])]
    assert "events/probe/a b.json" in keys  # keys arrive URL-encoded, as from AWS

    for database, dsn in info["postgres"].items():
        with psycopg.connect(dsn) as conn:
            assert conn.execute("select current_database()").fetchone()[0] == database


def test_the_fake_snowflake_holds_what_snowflake_setup_creates_and_reads_the_stacks_s3(local_stack, tmp_path):
    """snowflake_default, as env.sh exports it, reaches the fake Snowflake (http, routed by the
    airflow_local_settings.py `make services` writes), whose stages read the stack's moto."""
    script = tmp_path / "probe.py"
    script.write_text("""
import json
import boto3
from airflow.providers.snowflake.hooks.snowflake import SnowflakeHook
boto3.client("s3").put_object(Bucket="conveyor-local-curated", Key="events/probe/1.json", Body=b'{"order_id": 9}')
hook = SnowflakeHook()
print(json.dumps({
    "tables": sorted(r[0] for r in hook.get_records(
        "SELECT table_schema || '.' || table_name FROM CONVEYOR.information_schema.tables")),
    "copy": hook.get_records(
        "COPY INTO CONVEYOR.EVENTS.RAW_EVENTS (V, FILE_NAME, LOADED_AT) FROM (SELECT $1, METADATA$FILENAME, "
        "CURRENT_TIMESTAMP() FROM @CONVEYOR.EVENTS.CURATED_STAGE/probe/) FILE_FORMAT = (TYPE = JSON)")[0][1],
}))
""")
    result = in_stack_shell(local_stack, f"python {script}")
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert {"EVENTS.RAW_EVENTS", "EVENTS.ORDERS", "RETAIL.USERS", "RETAIL.TRANSACTIONS"} <= set(
        found["tables"]
    )
    assert found["copy"] == "LOADED"


def test_start_again_is_harmless(local_stack):
    before = json.loads((local_stack / "stack.json").read_text())
    again = conveyor_local(local_stack, "start")
    assert again.returncode == 0, again.stderr
    assert "already running" in again.stdout
    after = json.loads((local_stack / "stack.json").read_text())
    assert after["moto"] == before["moto"]
    assert after["aws"] == before["aws"]


def test_airflow_dags_test_cli_copies_a_dataset_configured_through_the_variable(local_stack):
    info = json.loads(conveyor_local(local_stack, "describe").stdout)
    session = boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=info["region"]
    )
    s3 = session.client("s3", endpoint_url=info["endpoint_url"])
    files = sample_data.movielens_files(seed=3)
    sample_data.upload(s3, info["buckets"]["source"], files)
    config = {
        "datasets": [
            {
                "name": "films",
                "source_bucket": info["buckets"]["source"],
                "source_prefix": "movielens/movies",
                "target_bucket": info["buckets"]["raw"],
                "target_prefix": "cli",
            }
        ]
    }
    s3.put_object(
        Bucket=info["buckets"]["source"], Key="config/nightly.json", Body=json.dumps(config).encode()
    )

    result = in_stack_shell(
        local_stack,
        f"AIRFLOW_VAR_NIGHTLY_FILE_INGESTION_CONFIG=s3://{info['buckets']['source']}/config/nightly.json "
        "airflow dags test nightly_file_ingestion 2024-03-05T20:00:00+00:00",
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "state=success" in result.stdout + result.stderr

    listed = s3.list_objects_v2(Bucket=info["buckets"]["raw"], Prefix="cli/")["Contents"]
    assert sorted(o["Key"] for o in listed) == [
        "cli/films/year=2024/month=03/day=05/links/links.csv",
        "cli/films/year=2024/month=03/day=05/movies.csv",
    ]
    copied = s3.get_object(
        Bucket=info["buckets"]["raw"], Key="cli/films/year=2024/month=03/day=05/movies.csv"
    )
    assert copied["Body"].read() == files["movielens/movies/movies.csv"]


def test_stop_stops_only_what_start_started(local_stack):
    state = json.loads((local_stack / "stack.json").read_text())
    moto_pid, snowflake_pid = state["moto"]["pid"], state["snowflake"]["pid"]
    pgdata = Path(state["postgres"]["pgdata"])
    postgres_pid = int((pgdata / "postmaster.pid").read_text().split()[0])
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stopped = conveyor_local(local_stack, "stop")
        assert stopped.returncode == 0, stopped.stderr
        assert "moto" in stopped.stdout and "postgres" in stopped.stdout and "snowflake" in stopped.stdout
        assert not _pid_alive(moto_pid)
        assert not _pid_alive(snowflake_pid)
        assert not _pid_alive(postgres_pid)
        assert bystander.poll() is None, "stop killed a process it did not start"
        assert "nothing was running" in conveyor_local(local_stack, "stop").stdout
    finally:
        bystander.kill()
