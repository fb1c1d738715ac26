"""retail_data_generator and inbound_to_stage through Airflow on moto."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime

import pytest
from conftest import run_dag, task_states

from conveyor import retail, staging

pytestmark = pytest.mark.integration

INBOUND, STAGE, ARCHIVE = "conveyor-local-inbound", "conveyor-local-stage", "conveyor-local-archive"
INTERVAL_END = datetime(2024, 3, 5, 20, 5, tzinfo=UTC)


def contents(s3, bucket) -> dict[str, bytes]:
    listed = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {o["Key"]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listed}


def test_generator_is_deterministic_for_a_seed():
    first = retail.generate(50, 400, seed=11)
    assert first == retail.generate(50, 400, seed=11)
    assert first != retail.generate(50, 400, seed=12)
    users = list(csv.DictReader(io.StringIO(first["user"].decode())))
    sales = list(csv.DictReader(io.StringIO(first["transactions"].decode())))
    assert len(users) == 50 and len(sales) == 400
    assert len({u["user_id"] for u in users}) == 50
    assert {s["user_id"] for s in sales} <= {u["user_id"] for u in users}, "every sale belongs to a user"
    assert all(float(s["unit_price"]) > 0 and int(s["quantity"]) >= 1 for s in sales)
    as_json = retail.generate(50, 400, seed=11, fmt="json")
    assert [json.loads(line)["user_id"] for line in as_json["user"].decode().splitlines()] == [
        u["user_id"] for u in users
    ]
    with pytest.raises(ValueError, match="format must be one of"):
        retail.generate(1, 1, seed=1, fmt="xml")


def test_generator_dag_writes_both_prefixes(aws):
    s3 = aws["session"].client("s3")
    dag_run = run_dag("retail_data_generator", users=7, transactions=30, seed=5, format="json")
    assert dag_run.state == "success"
    files = contents(s3, INBOUND)
    [user_key] = [k for k in files if k.startswith("user/")]
    [sales_key] = [k for k in files if k.startswith("transactions/")]
    assert user_key.endswith("-seed5.json") and sales_key.endswith("-seed5.json")
    expected = retail.generate(7, 30, seed=5, fmt="json")
    assert files[user_key] == expected["user"]
    assert files[sales_key] == expected["transactions"]
    assert s3.head_object(Bucket=INBOUND, Key=user_key)["ContentType"] == "application/x-ndjson"


def test_inbound_files_move_to_stage_and_dated_archive(aws):
    s3 = aws["session"].client("s3")
    files = {
        "user/users-1.csv": b"user_id\n1\n",
        "transactions/t-1.csv": b"transaction_id\n9\n",
        "transactions/nested/t 2.json": b'{"a": 1}\n',
        "elsewhere/ignored.csv": b"not retail",
    }
    for key, body in files.items():
        s3.put_object(Bucket=INBOUND, Key=key, Body=body)

    dag_run = run_dag("inbound_to_stage", INTERVAL_END)
    assert dag_run.state == "success"
    retail_files = {k: v for k, v in files.items() if not k.startswith("elsewhere/")}
    assert contents(s3, STAGE) == retail_files
    assert contents(s3, ARCHIVE) == {
        "user/year=2024/month=03/day=05/users-1.csv": b"user_id\n1\n",
        "transactions/year=2024/month=03/day=05/t-1.csv": b"transaction_id\n9\n",
        "transactions/year=2024/month=03/day=05/nested/t 2.json": b'{"a": 1}\n',
    }
    assert contents(s3, INBOUND) == {"elsewhere/ignored.csv": b"not retail"}, "only moved files are deleted"


def test_inbound_file_is_never_deleted_without_both_copies(aws, no_retries):
    s3 = aws["session"].client("s3")
    s3.put_object(Bucket=INBOUND, Key="user/u.csv", Body=b"u")
    s3.delete_bucket(Bucket=ARCHIVE)  # every archive copy now fails

    dag_run = run_dag("inbound_to_stage", INTERVAL_END)
    assert dag_run.state == "failed"
    assert contents(s3, INBOUND) == {"user/u.csv": b"u"}
    assert contents(s3, STAGE) == {"user/u.csv": b"u"}, "the stage copy alone is not enough to delete"


def test_inbound_file_changed_after_listing_is_kept(aws, monkeypatch):
    s3 = aws["session"].client("s3")
    s3.put_object(Bucket=INBOUND, Key="user/u.csv", Body=b"old")
    listed = list(staging.list_objects(s3, INBOUND, "user/"))

    real_copy = staging.copy_objects

    def copy_then_reupload(*args, **kwargs):  # a producer re-uploads while we copy
        results = real_copy(*args, **kwargs)
        s3.put_object(Bucket=INBOUND, Key="user/u.csv", Body=b"new!")
        return results

    monkeypatch.setattr(staging, "copy_objects", copy_then_reupload)
    result = staging.stage_and_archive(s3, INBOUND, STAGE, ARCHIVE, INTERVAL_END.date())
    assert listed[0].size == 3
    assert result["moved"] == 0
    assert "changed in inbound since it was listed" in result["kept"][0]["problems"][0]
    assert contents(s3, INBOUND) == {"user/u.csv": b"new!"}


def test_nothing_arriving_skips_the_run(aws, monkeypatch):
    monkeypatch.setenv("AIRFLOW__CONVEYOR__INBOUND_TO_STAGE_WAIT_SECONDS", "1")
    aws["session"].client("s3").put_object(Bucket=INBOUND, Key="elsewhere/x.csv", Body=b"x")
    dag_run = run_dag("inbound_to_stage", INTERVAL_END)
    assert dag_run.state == "success"  # a quiet interval is not a failure...
    assert task_states(dag_run) == {"wait_for_inbound_files": ["skipped"], "stage_and_archive": ["skipped"]}
