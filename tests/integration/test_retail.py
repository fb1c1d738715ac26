"""retail_data_generator and inbound_to_stage through Airflow on moto: a streaming, deterministic
generator; inbound files moved by exact version (every version that arrived is archived, dated by
its arrival; a re-upload mid-run is never lost; a version is deleted only once archived); two
runs over the same listing move each version once; backfills refused; quiet intervals and folder
markers skip the run."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import time
import tracemalloc
from datetime import UTC, datetime, timedelta

import pytest
from conftest import run_dag, task_states

from conveyor.retail import generator, staging
from conveyor.s3 import CopyResult

pytestmark = pytest.mark.integration

INBOUND, STAGE, ARCHIVE = "conveyor-local-inbound", "conveyor-local-stage", "conveyor-local-archive"
INTERVAL_END = datetime(2024, 3, 5, 20, 5, tzinfo=UTC)


def contents(s3, bucket) -> dict[str, bytes]:
    listed = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {o["Key"]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listed}


def inbound_versions(s3) -> list[dict]:
    """Every version (and delete marker) left in inbound, newest first per key."""
    listed = s3.list_object_versions(Bucket=INBOUND)
    return listed.get("Versions", []) + listed.get("DeleteMarkers", [])


def put_versions(s3, key: str, bodies: list[bytes], same_second: bool) -> list[str]:
    """Upload `bodies` as successive versions of `key`, all stored in one second, or the first one
    second earlier than the rest; returns their version ids, oldest first."""
    while True:
        start = datetime.now(UTC).replace(microsecond=0)
        while datetime.now(UTC).replace(microsecond=0) == start:  # wait for a fresh second
            time.sleep(0.01)
        ids = []
        for index, body in enumerate(bodies):
            if index == 1 and not same_second:
                second = datetime.now(UTC).replace(microsecond=0)
                while datetime.now(UTC).replace(microsecond=0) == second:
                    time.sleep(0.01)
            ids.append(s3.put_object(Bucket=INBOUND, Key=key, Body=body)["VersionId"])
        stored = [s3.head_object(Bucket=INBOUND, Key=key, VersionId=i)["LastModified"] for i in ids]
        if len(set(stored[0 if same_second else 1 :])) == 1 and (same_second or stored[0] < stored[1]):
            return ids
        for version_id in ids:  # the clock ticked in between: start again
            s3.delete_object(Bucket=INBOUND, Key=key, VersionId=version_id)


def expected_archive(s3) -> dict[str, bytes]:
    """What the archive must hold once every version now in inbound is moved: one object per
    version, under the date it arrived, named by its arrival, order within a second and id."""
    expected = {}
    for file in staging.list_inbound(s3, INBOUND):
        for version in file.versions:
            body = s3.get_object(Bucket=INBOUND, Key=file.key, VersionId=version.source.version_id)
            expected[version.archive_key] = body["Body"].read()
    return expected


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


def test_inbound_files_move_to_stage_and_an_archive_dated_by_arrival(aws):
    s3 = aws["session"].client("s3")
    files = {
        "user/users-1.csv": b"user_id\n1\n",
        "transactions/t-1.csv": b"transaction_id\n9\n",
        "transactions/nested/t 2.json": b'{"a": 1}\n',
        "elsewhere/ignored.csv": b"not retail",
    }
    for key, body in files.items():
        s3.put_object(Bucket=INBOUND, Key=key, Body=body)
    archive = expected_archive(s3)
    arrived = {v["Key"]: v["LastModified"] for v in inbound_versions(s3)}

    dag_run = run_dag("inbound_to_stage", INTERVAL_END)
    assert dag_run.state == "success"
    retail_files = {k: v for k, v in files.items() if not k.startswith("elsewhere/")}
    assert contents(s3, STAGE) == retail_files
    assert contents(s3, ARCHIVE) == archive
    day = arrived["transactions/nested/t 2.json"]
    [nested] = [k for k in archive if k.endswith("_t 2.json")]
    assert nested.startswith(f"transactions/{day:year=%Y/month=%m/day=%d}/nested/{day:%Y%m%dT%H%M%S}Z-0_")
    assert contents(s3, INBOUND) == {"elsewhere/ignored.csv": b"not retail"}, "only moved files are deleted"
    left = s3.list_object_versions(Bucket=INBOUND, Prefix="user/")
    assert not left.get("Versions") and not left.get("DeleteMarkers"), (
        "the copied versions are gone, with no delete marker left behind"
    )


def test_every_version_uploaded_between_two_runs_reaches_the_archive_and_stage_gets_the_newest(aws):
    """Item 8: a file uploaded three times within one interval. Before, the older versions were
    deleted by VersionId (permanently) without ever being copied anywhere."""
    s3 = aws["session"].client("s3")
    for body in (b"first", b"second!", b"third, newest"):
        s3.put_object(Bucket=INBOUND, Key="user/u.csv", Body=body)
    s3.put_object(Bucket=INBOUND, Key="transactions/t.csv", Body=b"t")

    dag_run = run_dag("inbound_to_stage", INTERVAL_END)
    assert dag_run.state == "success"
    assert contents(s3, STAGE) == {"user/u.csv": b"third, newest", "transactions/t.csv": b"t"}
    archived = contents(s3, ARCHIVE)
    users = sorted(k for k in archived if k.startswith("user/"))
    # Three objects, listed in the order the versions arrived (S3 stores arrival to the second:
    # the -<n> after it orders versions of the same second).
    assert [archived[k] for k in users] == [b"first", b"second!", b"third, newest"], users
    assert all(k.endswith("_u.csv") for k in users)
    assert inbound_versions(s3) == []


def test_the_archive_date_comes_from_arrival_whatever_interval_the_run_is_for(aws):
    """Item 9: a run of a long-past interval (a backfill run, a cleared old run) finds today's
    files; it archives them under the date they arrived, as any other run would, not under its
    own interval's date."""
    s3 = aws["session"].client("s3")
    s3.put_object(Bucket=INBOUND, Key="user/u.csv", Body=b"u")
    [version] = inbound_versions(s3)
    arrived = version["LastModified"]
    past_interval_end = datetime(2021, 6, 1, 0, 5, tzinfo=UTC)
    assert arrived.date() != past_interval_end.date()

    assert run_dag("inbound_to_stage", past_interval_end).state == "success"
    [key] = contents(s3, ARCHIVE)
    assert (
        key
        == f"user/{arrived:year=%Y/month=%m/day=%d}/{arrived:%Y%m%dT%H%M%S}Z-0_{version['VersionId']}_u.csv"
    )


def test_a_run_without_a_logical_date_moves_what_is_in_inbound(aws):
    """Item 5: a run triggered with `logical_date: null` (no data interval) moves inbound as
    any run does; before, stage_and_archive failed on the missing data_interval_end."""
    s3 = aws["session"].client("s3")
    s3.put_object(Bucket=INBOUND, Key="user/u.csv", Body=b"u")
    [version] = inbound_versions(s3)
    dag_run = run_dag("inbound_to_stage", None)
    assert (dag_run.logical_date, dag_run.data_interval_start, dag_run.data_interval_end) == (
        None,
        None,
        None,
    )
    assert dag_run.state == "success", task_states(dag_run)
    assert contents(s3, STAGE) == {"user/u.csv": b"u"}
    archive_key = staging.archive_key("user/u.csv", version["LastModified"], version["VersionId"])
    assert contents(s3, ARCHIVE) == {archive_key: b"u"}
    assert inbound_versions(s3) == []


def test_airflow_refuses_a_backfill_and_a_backfill_run_fails_saying_what_to_do(aws):
    """Item 9: inbound_to_stage acts on inbound as it is now, so it cannot be backfilled. Airflow
    itself refuses to create the backfill (the same call the UI, REST API and CLI make);
    before, it created one run per past interval, each moving today's files."""
    from airflow.exceptions import DagRunTypeNotAllowed
    from airflow.models.backfill import _create_backfill

    assert run_dag("inbound_to_stage", INTERVAL_END).state == "success"  # the DAG in the metadata DB
    with pytest.raises(DagRunTypeNotAllowed, match="does not allow backfill runs"):
        _create_backfill(
            dag_id="inbound_to_stage",
            from_date=INTERVAL_END - timedelta(hours=1),
            to_date=INTERVAL_END,
            max_active_runs=1,
            reverse=False,
            dag_run_conf=None,
            triggering_user_name="test",
        )
    # A backfill run that exists anyway (created before this rule): refused with what to do.
    with pytest.raises(staging.NotBackfillable) as refused:
        staging.refuse_backfill("backfill")
    assert "moves the files that are in the inbound bucket now" in str(refused.value)
    assert "trigger a manual run" in str(refused.value)
    for run_type in ("scheduled", "manual"):
        staging.refuse_backfill(run_type)


def test_inbound_file_is_never_deleted_without_both_copies(aws, no_retries):
    s3 = aws["session"].client("s3")
    s3.put_object(Bucket=INBOUND, Key="user/u.csv", Body=b"u")
    s3.delete_bucket(Bucket=ARCHIVE)  # every archive copy now fails

    dag_run = run_dag("inbound_to_stage", INTERVAL_END)
    assert dag_run.state == "failed"
    assert contents(s3, INBOUND) == {"user/u.csv": b"u"}
    assert contents(s3, STAGE) == {"user/u.csv": b"u"}, "the stage copy alone is not enough to delete"


def _archive_copy_fails_for(monkeypatch, version):
    real_copy = staging.copy_objects

    def copy(client, requests, **options):
        requests = list(requests)
        broken = [r for r in requests if r.target_key == version.archive_key]
        results = real_copy(client, [r for r in requests if r not in broken], **options)
        return results + [CopyResult(r, "ClientError: SlowDown") for r in broken]

    monkeypatch.setattr(staging, "copy_objects", copy)
    return lambda: monkeypatch.setattr(staging, "copy_objects", real_copy)


def test_a_version_whose_archive_copy_failed_stays_and_so_do_the_newer_ones(aws, monkeypatch):
    """Nothing is deleted that was not archived; and a newer version is not deleted while an
    older one stays (the older one would become current, and the next run would stage it over
    the newer one). The next run archives each remaining version once, under the same key."""
    s3 = aws["session"].client("s3")
    put_versions(s3, "user/u.csv", [b"v1", b"v2 failing", b"v3 newest"], same_second=False)
    files = staging.list_inbound(s3, INBOUND)
    [v3, v2, v1] = files[0].versions
    restore = _archive_copy_fails_for(monkeypatch, v2)

    result = staging.stage_and_archive(s3, files, STAGE, ARCHIVE)
    assert (result["moved"], result["archived"]) == (0, 1)
    assert [(k["version_id"], k["problems"]) for k in result["kept"]] == [
        (v2.source.version_id, [f"copy to s3://{ARCHIVE}/{v2.archive_key} failed: ClientError: SlowDown"]),
        (
            v3.source.version_id,
            [f"an older version ({v2.source.version_id}) is kept, so this one stays after it"],
        ),
    ]
    assert contents(s3, ARCHIVE)[v1.archive_key] == b"v1", "the oldest one, archived, is deleted"
    assert [v["VersionId"] for v in inbound_versions(s3)] == [v3.source.version_id, v2.source.version_id]
    assert contents(s3, INBOUND) == {"user/u.csv": b"v3 newest"}, "the newest is still the current one"

    restore()
    relisted = staging.list_inbound(s3, INBOUND)
    assert [v.archive_key for v in relisted[0].versions] == [v3.archive_key, v2.archive_key]
    again = staging.stage_and_archive(s3, relisted, STAGE, ARCHIVE)
    assert (again["moved"], again["archived"], again["kept"]) == (1, 2, [])
    assert contents(s3, ARCHIVE) == {
        v1.archive_key: b"v1",
        v2.archive_key: b"v2 failing",
        v3.archive_key: b"v3 newest",
    }
    assert contents(s3, STAGE) == {"user/u.csv": b"v3 newest"}
    assert inbound_versions(s3) == []


def test_versions_stored_in_the_same_second_are_numbered_in_order_and_move_together(aws, monkeypatch):
    """S3 records arrival to the second; versions of one second are numbered in S3's order. When
    one of them cannot be archived, the whole second waits, so the next run numbers them the same."""
    s3 = aws["session"].client("s3")
    put_versions(s3, "user/u.csv", [b"a", b"b", b"c"], same_second=True)
    files = staging.list_inbound(s3, INBOUND)
    [c, b, a] = files[0].versions
    assert [v.archive_key.split("/")[-1].split("_")[0][-2:] for v in (a, b, c)] == ["-0", "-1", "-2"]
    restore = _archive_copy_fails_for(monkeypatch, b)

    result = staging.stage_and_archive(s3, files, STAGE, ARCHIVE)
    assert result["archived"] == 0
    assert {k["version_id"]: k["problems"][0] for k in result["kept"]} == {
        b.source.version_id: f"copy to s3://{ARCHIVE}/{b.archive_key} failed: ClientError: SlowDown",
        a.source.version_id: f"stored in the same second as version {b.source.version_id}, which is kept: it stays with it",
        c.source.version_id: f"an older version ({b.source.version_id}) is kept, so this one stays after it",
    }
    assert len(inbound_versions(s3)) == 3

    restore()
    again = staging.stage_and_archive(s3, staging.list_inbound(s3, INBOUND), STAGE, ARCHIVE)
    assert (again["moved"], again["archived"], again["kept"]) == (1, 3, [])
    archived = contents(s3, ARCHIVE)
    assert archived == {a.archive_key: b"a", b.archive_key: b"b", c.archive_key: b"c"}
    assert [archived[k] for k in sorted(archived)] == [b"a", b"b", b"c"], "listed in arrival order"


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
    first = staging.stage_and_archive(s3, staging.list_inbound(s3, INBOUND), STAGE, ARCHIVE)
    assert (first["moved"], first["kept"]) == (1, [])
    assert contents(s3, INBOUND) == {"user/u.csv": b"new!"}, "the re-upload is not deleted unprocessed"
    assert contents(s3, STAGE) == {"user/u.csv": b"old"}

    monkeypatch.setattr(staging, "copy_objects", real_copy)
    second = staging.stage_and_archive(s3, staging.list_inbound(s3, INBOUND), STAGE, ARCHIVE)
    assert second["moved"] == 1
    assert contents(s3, STAGE) == {"user/u.csv": b"new!"}
    assert contents(s3, INBOUND) == {}
    assert sorted(contents(s3, ARCHIVE).values()) == [b"new!", b"old"]


def test_two_runs_over_the_same_listing_move_each_version_once_and_lose_nothing(aws, monkeypatch):
    """Two runs list the same versions (a retry of stage_and_archive with its first try's
    listing, or a run beside another): the second finds them gone from inbound, checks their
    archive copies and succeeds, without restaging anything; a version that arrived meanwhile
    waits for the next run. Before, the second run failed on every version the first deleted."""
    s3 = aws["session"].client("s3")
    s3.put_object(Bucket=INBOUND, Key="user/u.csv", Body=b"v1")
    s3.put_object(Bucket=INBOUND, Key="user/u.csv", Body=b"v2")
    s3.put_object(Bucket=INBOUND, Key="transactions/t.csv", Body=b"t")
    listing = staging.list_inbound(s3, INBOUND)

    # Interleaved: run B copies first, run A then moves everything, then B verifies and deletes.
    real_copy = staging.copy_objects

    def copy_then_the_other_run_moves_all(*args, **kwargs):
        results = real_copy(*args, **kwargs)
        monkeypatch.setattr(staging, "copy_objects", real_copy)
        other = staging.stage_and_archive(s3, staging.list_inbound(s3, INBOUND), STAGE, ARCHIVE)
        assert (other["moved"], other["archived"], other["kept"]) == (2, 3, [])
        return results

    monkeypatch.setattr(staging, "copy_objects", copy_then_the_other_run_moves_all)
    interleaved = staging.stage_and_archive(s3, listing, STAGE, ARCHIVE)
    assert interleaved["kept"] == [] and interleaved["vanished"] == []

    # Afterwards: B's stale listing again (a retry), with a new version waiting in inbound.
    s3.put_object(Bucket=INBOUND, Key="user/u.csv", Body=b"v3")
    stale = staging.stage_and_archive(s3, listing, STAGE, ARCHIVE)
    assert stale["kept"] == [] and stale["vanished"] == []
    assert (stale["moved"], stale["archived"], len(stale["already_moved"])) == (0, 0, 3)
    assert contents(s3, STAGE) == {"user/u.csv": b"v2", "transactions/t.csv": b"t"}, "nothing restaged"
    assert contents(s3, INBOUND) == {"user/u.csv": b"v3"}, "the new version waits for the next run"
    archived = contents(s3, ARCHIVE)
    assert sorted(archived.values()) == [b"t", b"v1", b"v2"], "each version archived once"

    latest = staging.stage_and_archive(s3, staging.list_inbound(s3, INBOUND), STAGE, ARCHIVE)
    assert (latest["moved"], latest["kept"]) == (1, [])
    assert contents(s3, STAGE)["user/u.csv"] == b"v3"
    assert sorted(contents(s3, ARCHIVE).values()) == [b"t", b"v1", b"v2", b"v3"]
    assert inbound_versions(s3) == []


def test_a_version_deleted_by_someone_else_before_the_copy_is_named_not_fatal(aws):
    s3 = aws["session"].client("s3")
    s3.put_object(Bucket=INBOUND, Key="user/u.csv", Body=b"u")
    s3.put_object(Bucket=INBOUND, Key="transactions/t.csv", Body=b"t")
    listing = staging.list_inbound(s3, INBOUND)
    [gone] = [f for f in listing if f.key == "user/u.csv"]
    s3.delete_object(Bucket=INBOUND, Key="user/u.csv", VersionId=gone.current.source.version_id)

    result = staging.stage_and_archive(s3, listing, STAGE, ARCHIVE)
    assert result["vanished"] == [f"user/u.csv version {gone.current.source.version_id}"]
    assert (result["moved"], result["kept"]) == (1, [])
    assert contents(s3, STAGE) == {"transactions/t.csv": b"t"}


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
