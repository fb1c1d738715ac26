"""retail_data_generator and inbound_to_stage through Airflow on moto: a streaming, deterministic
generator; inbound files moved by exact version (a re-upload mid-run is never lost); quiet
intervals and folder markers skip the run."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import tracemalloc
from datetime import UTC, datetime

import pytest
from conftest import run_dag, task_states

from conveyor.retail import generator, staging

pytestmark = pytest.mark.integration

INBOUND, STAGE, ARCHIVE = "conveyor-local-inbound", "conveyor-local-stage", "conveyor-local-archive"
INTERVAL_END = datetime(2024, 3, 5, 20, 5, tzinfo=UTC)


def contents(s3, bucket) -> dict[str, bytes]:
    listed = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {o["Key"]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listed}


# --- the generator ------------------------------------------------------------------------------


def test_generator_is_deterministic_for_a_seed():
    first = generator.generate(50, 400, seed=11)
    assert first == generator.generate(50, 400, seed=11)
    assert first != generator.generate(50, 400, seed=12)
    users = list(csv.DictReader(io.StringIO(first["user"].decode())))
    sales = list(csv.DictReader(io.StringIO(first["transactions"].decode())))
    assert len(users) == 50 and len(sales) == 400
    assert len({u["user_id"] for u in users}) == 50
    by_id = {u["user_id"]: u for u in users}
    assert {s["user_id"] for s in sales} <= set(by_id), "every sale belongs to a user"
    for sale in sales:  # a sale is in its buyer's currency and after the buyer signed up
        buyer = by_id[sale["user_id"]]
        assert sale["currency"] == generator.CURRENCIES[buyer["country"]]
        assert datetime.fromisoformat(sale["transaction_ts"]) > datetime.fromisoformat(buyer["signup_ts"])
    assert all(float(s["unit_price"]) > 0 and int(s["quantity"]) >= 1 for s in sales)
    as_json = generator.generate(50, 400, seed=11, fmt="json")
    assert [json.loads(line)["user_id"] for line in as_json["user"].decode().splitlines()] == [
        u["user_id"] for u in users
    ]
    with pytest.raises(ValueError, match="format must be one of"):
        generator.generate(1, 1, seed=1, fmt="xml")


@pytest.mark.parametrize("fmt", generator.FORMATS)
def test_the_same_bytes_whatever_the_chunk_size(fmt):
    whole = generator.generate(30, 500, seed=3, fmt=fmt)
    for kind, chunks in generator.stream(30, 500, seed=3, fmt=fmt, chunk_rows=7).items():
        chunks = list(chunks)
        assert len(chunks) > 1, "streamed in several chunks"
        assert b"".join(chunks) == whole[kind]


def _peak_generating(users: int, transactions: int) -> tuple[int, str]:
    """Peak traced memory while streaming both files (nothing kept), and their digest."""
    digest = hashlib.sha256()
    tracemalloc.start()
    try:
        for chunks in generator.stream(users, transactions, seed=5, chunk_rows=1_000).values():
            for chunk in chunks:
                digest.update(chunk)
        return tracemalloc.get_traced_memory()[1], digest.hexdigest()
    finally:
        tracemalloc.stop()


def test_memory_stays_flat_whatever_the_row_count():
    """Ten times the users and transactions, about the same peak: nothing grows with the count
    (all rows in memory, as before, would add ~25 MB at 30,000 users and transactions)."""
    small, _ = _peak_generating(3_000, 3_000)
    large, _ = _peak_generating(30_000, 30_000)
    assert large < small * 1.5 + 1_000_000, f"peak {small:,} B for 3k rows, {large:,} B for 30k rows"
    assert large < 8_000_000


def test_generator_dag_streams_both_files_to_inbound(aws):
    s3 = aws["session"].client("s3")
    dag_run = run_dag("retail_data_generator", users=7, transactions=30, seed=5, format="json")
    assert dag_run.state == "success"
    files = contents(s3, INBOUND)
    [user_key] = [k for k in files if k.startswith("user/")]
    [sales_key] = [k for k in files if k.startswith("transactions/")]
    assert user_key.endswith("-seed5.json") and sales_key.endswith("-seed5.json")
    expected = generator.generate(7, 30, seed=5, fmt="json")
    assert files[user_key] == expected["user"]
    assert files[sales_key] == expected["transactions"]
    head = s3.head_object(Bucket=INBOUND, Key=user_key)
    assert (head["ContentType"], head["Metadata"]) == ("application/x-ndjson", {"generator-seed": "5"})


# --- inbound_to_stage ---------------------------------------------------------------------------


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
    s3.put_object(Bucket=INBOUND, Key="user/users-1.csv", Body=b"user_id\n1\n")  # an older version too

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
    left = s3.list_object_versions(Bucket=INBOUND, Prefix="user/")
    assert not left.get("Versions") and not left.get("DeleteMarkers"), (
        "the copied version and the one it superseded are gone, with no delete marker left behind"
    )


def test_inbound_file_is_never_deleted_without_both_copies(aws, no_retries):
    s3 = aws["session"].client("s3")
    s3.put_object(Bucket=INBOUND, Key="user/u.csv", Body=b"u")
    s3.delete_bucket(Bucket=ARCHIVE)  # every archive copy now fails

    dag_run = run_dag("inbound_to_stage", INTERVAL_END)
    assert dag_run.state == "failed"
    assert contents(s3, INBOUND) == {"user/u.csv": b"u"}
    assert contents(s3, STAGE) == {"user/u.csv": b"u"}, "the stage copy alone is not enough to delete"


def test_a_file_reuploaded_mid_run_stays_in_inbound_for_the_next_run(aws, monkeypatch):
    """The race: the producer re-uploads the key after it was listed and copied, before the
    delete. Only the copied version is deleted; the new one is moved by the next run."""
    s3 = aws["session"].client("s3")
    s3.put_object(Bucket=INBOUND, Key="user/u.csv", Body=b"old")
    real_copy = staging.copy_objects

    def copy_then_reupload(*args, **kwargs):
        results = real_copy(*args, **kwargs)
        s3.put_object(Bucket=INBOUND, Key="user/u.csv", Body=b"new!")
        return results

    monkeypatch.setattr(staging, "copy_objects", copy_then_reupload)
    first = staging.stage_and_archive(
        s3, staging.list_inbound(s3, INBOUND), STAGE, ARCHIVE, INTERVAL_END.date()
    )
    assert (first["moved"], first["kept"]) == (1, [])
    assert contents(s3, INBOUND) == {"user/u.csv": b"new!"}, "the re-upload is not deleted unprocessed"
    assert contents(s3, STAGE) == {"user/u.csv": b"old"}

    monkeypatch.setattr(staging, "copy_objects", real_copy)
    second = staging.stage_and_archive(
        s3, staging.list_inbound(s3, INBOUND), STAGE, ARCHIVE, INTERVAL_END.date()
    )
    assert second["moved"] == 1
    assert contents(s3, STAGE) == {"user/u.csv": b"new!"}
    assert contents(s3, INBOUND) == {}


def test_an_unversioned_inbound_bucket_fails_saying_why(aws, no_retries):
    s3 = aws["session"].client("s3")
    s3.create_bucket(Bucket="plain-inbound", CreateBucketConfiguration={"LocationConstraint": "eu-west-2"})
    s3.put_object(Bucket="plain-inbound", Key="user/u.csv", Body=b"u")
    with pytest.raises(staging.InboundNotVersioned, match="'plain-inbound' has versioning never enabled"):
        staging.list_inbound(s3, "plain-inbound")


@pytest.mark.parametrize(
    "objects",
    [{}, {"elsewhere/x.csv": b"x"}, {"user/": b"", "transactions/": b""}],
    ids=["empty", "unrelated-object", "folder-markers"],
)
def test_nothing_to_move_skips_the_run_without_an_asset_event(aws, objects):
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session

    s3 = aws["session"].client("s3")
    for key, body in objects.items():
        s3.put_object(Bucket=INBOUND, Key=key, Body=body)
    dag_run = run_dag("inbound_to_stage", INTERVAL_END)
    assert dag_run.state == "success"  # a quiet interval is not a failure...
    assert task_states(dag_run) == {"find_inbound_files": ["skipped"], "stage_and_archive": ["skipped"]}
    with create_session() as session:
        emitted = session.query(AssetEvent).filter(AssetEvent.source_run_id == dag_run.run_id).count()
    assert emitted == 0, "no stage asset event for 0 files"
