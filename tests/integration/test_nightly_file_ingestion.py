"""nightly_file_ingestion through Airflow (`dag.test()`, real metadata DB) on moto S3/SNS/SQS."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from conftest import read_messages, run_dag

from conveyor_local import sample_data
from conveyor_local.provision import NOTIFICATIONS_INBOX

pytestmark = pytest.mark.integration

DAG_ID = "nightly_file_ingestion"
SOURCE, RAW = "conveyor-local-source", "conveyor-local-raw"
MARCH_5 = datetime(2024, 3, 5, 20, 0, tzinfo=UTC)  # interval [03-04 20:00, 03-05 20:00)


@pytest.fixture
def stack(aws, monkeypatch):
    """moto with the sample MovieLens files in the source bucket; the default config applies."""
    s3 = aws["session"].client("s3")
    files = sample_data.movielens_files(seed=7)
    sample_data.upload(s3, SOURCE, files)
    aws["files"] = files
    aws["s3"] = s3
    return aws


def run(dagbag=None, logical_date=MARCH_5, **conf):
    return run_dag(DAG_ID, logical_date, **conf)


def objects(s3, bucket, prefix=""):
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return {o["Key"]: s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listed}


def summaries(stack) -> list[tuple[str, dict]]:
    """The run summaries on the notifications topic (failure alerts, tested elsewhere, left out)."""
    envelopes = read_messages(stack["session"], stack["queues"][NOTIFICATIONS_INBOX])
    messages = [(e["Subject"], json.loads(e["Message"])) for e in envelopes]
    return [(subject, message) for subject, message in messages if "datasets" in message]


def expected_keys(files, day="year=2024/month=03/day=05"):
    out = {}
    for key, body in files.items():
        _, dataset, rest = key.split("/", 2)
        out[f"landing/{dataset}/{day}/{rest}"] = body
    return out


def test_copies_every_dataset_to_dated_keys_and_publishes_a_summary(dagbag, stack):
    dag_run = run(dagbag)
    assert dag_run.state == "success"

    landed = objects(stack["s3"], RAW)
    assert landed == expected_keys(stack["files"])
    # Spaces, unicode and nested folders keep their path below the source prefix.
    assert "landing/tags/year=2024/month=03/day=05/tags – Zoë's picks.csv" in landed
    assert "landing/ratings/year=2024/month=03/day=05/part 2/ratings-001.csv" in landed
    head = stack["s3"].head_object(Bucket=RAW, Key="landing/movies/year=2024/month=03/day=05/movies.csv")
    assert head["ContentType"] == "text/csv"
    assert head["Metadata"] == {"source-system": "movielens-sample"}

    [(subject, message)] = summaries(stack)
    assert subject == "[conveyor] nightly_file_ingestion succeeded for 2024-03-05"
    assert message["status"] == "succeeded"
    assert message["date"] == "2024-03-05"
    assert message["failures"] == []
    by_name = {d["name"]: d for d in message["datasets"]}
    for name in ("movies", "ratings", "tags"):
        mine = {k: v for k, v in stack["files"].items() if k.startswith(f"movielens/{name}/")}
        assert by_name[name]["objects"] == len(mine)
        assert by_name[name]["bytes"] == sum(len(v) for v in mine.values())
        assert by_name[name]["target"] == f"s3://{RAW}/landing/{name}/year=2024/month=03/day=05/"
    assert message["totals"]["objects"] == len(stack["files"])


def test_backfill_of_past_dates_writes_each_interval_to_its_own_date(dagbag, stack):
    from airflow.models.backfill import _get_info_list
    from airflow.serialization.serialized_objects import DagSerialization

    # The slots `airflow backfill create --from-date 2024-02-28 --to-date 2024-03-01` runs, from
    # the same function the backfill uses, on the DAG as the scheduler sees it.
    scheduler_dag = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dagbag.get_dag(DAG_ID)))
    planned = [
        (info.data_interval.start, info.data_interval.end)
        for info in _get_info_list(
            from_date=datetime(2024, 2, 28, tzinfo=UTC),
            to_date=datetime(2024, 3, 1, tzinfo=UTC),
            reverse=False,
            dag=scheduler_dag,
        )
    ]
    # One run per 24 h slot starting in the range (a backfill's logical date is the slot's start),
    # across the leap day.
    assert planned == [
        (datetime(2024, 2, 28, 20, tzinfo=UTC), datetime(2024, 2, 29, 20, tzinfo=UTC)),
        (datetime(2024, 2, 29, 20, tzinfo=UTC), datetime(2024, 3, 1, 20, tzinfo=UTC)),
    ]
    for start, end in planned:
        dag_run = run(dagbag, logical_date=end)  # the run for the slot ending at `end`
        assert (dag_run.data_interval_start, dag_run.data_interval_end) == (start, end)
        assert dag_run.state == "success"

    landed = objects(stack["s3"], RAW)
    assert landed == {
        **expected_keys(stack["files"], day="year=2024/month=02/day=29"),
        **expected_keys(stack["files"], day="year=2024/month=03/day=01"),
    }
    assert [m["date"] for _, m in summaries(stack)] == ["2024-02-29", "2024-03-01"]


def test_rerun_of_the_same_interval_writes_the_same_keys_and_nothing_more(dagbag, stack):
    assert run(dagbag).state == "success"
    first = objects(stack["s3"], RAW)
    assert run(dagbag).state == "success"
    assert objects(stack["s3"], RAW) == first
    assert len(summaries(stack)) == 2


def test_params_select_datasets_and_empty_prefix_is_zero_objects(dagbag, stack):
    stack["s3"].put_object(
        Bucket=SOURCE,
        Key="configs/two.json",
        Body=json.dumps(
            {
                "datasets": [
                    {
                        "name": "ratings",
                        "source_bucket": SOURCE,
                        "source_prefix": "movielens/ratings",
                        "target_bucket": RAW,
                        "target_prefix": "landing",
                    },
                    {
                        "name": "empty",
                        "source_bucket": SOURCE,
                        "source_prefix": "nothing/here",
                        "target_bucket": RAW,
                        "target_prefix": "landing",
                    },
                    {
                        "name": "movies",
                        "source_bucket": SOURCE,
                        "source_prefix": "movielens/movies",
                        "target_bucket": RAW,
                        "target_prefix": "landing",
                    },
                ]
            }
        ).encode(),
    )
    dag_run = run(dagbag, config_uri=f"s3://{SOURCE}/configs/two.json", datasets=["ratings", "empty"])
    assert dag_run.state == "success"
    assert {k.split("/")[1] for k in objects(stack["s3"], RAW)} == {"ratings"}
    [(_, message)] = summaries(stack)
    assert {d["name"]: d["objects"] for d in message["datasets"]} == {"ratings": 2, "empty": 0}


def test_config_from_the_variable(dagbag, stack, monkeypatch):
    stack["s3"].put_object(
        Bucket=SOURCE,
        Key="configs/var.json",
        Body=json.dumps(
            {
                "datasets": [
                    {
                        "name": "films",
                        "source_bucket": SOURCE,
                        "source_prefix": "movielens/movies",
                        "target_bucket": RAW,
                        "target_prefix": "from-variable",
                    }
                ]
            }
        ).encode(),
    )
    monkeypatch.setenv("AIRFLOW_VAR_NIGHTLY_FILE_INGESTION_CONFIG", f"s3://{SOURCE}/configs/var.json")
    assert run(dagbag).state == "success"
    assert sorted(objects(stack["s3"], RAW)) == [
        "from-variable/films/year=2024/month=03/day=05/links/links.csv",
        "from-variable/films/year=2024/month=03/day=05/movies.csv",
    ]


def test_config_pasted_into_the_variable(dagbag, stack, monkeypatch):
    pasted = {
        "datasets": [
            {
                "name": "films",
                "source_bucket": SOURCE,
                "source_prefix": "movielens/movies",
                "target_bucket": RAW,
                "target_prefix": "pasted",
            }
        ]
    }
    monkeypatch.setenv("AIRFLOW_VAR_NIGHTLY_FILE_INGESTION_CONFIG", json.dumps(pasted, indent=2))
    assert run(dagbag).state == "success"
    assert sorted(objects(stack["s3"], RAW)) == [
        "pasted/films/year=2024/month=03/day=05/links/links.csv",
        "pasted/films/year=2024/month=03/day=05/movies.csv",
    ]


def test_a_variable_that_is_neither_s3_nor_json_fails_saying_what_is_accepted(dagbag, stack, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_NIGHTLY_FILE_INGESTION_CONFIG", f"{SOURCE}/configs/var.json")
    dag_run = run(dagbag)
    assert dag_run.state == "failed"
    [(_, message)] = summaries(stack)
    [failure] = message["failures"]
    assert failure["error"] == (
        "Variable nightly_file_ingestion_config must hold s3://bucket/key or the config's JSON document "
        f"itself; got '{SOURCE}/configs/var.json'"
    )


def test_the_nightly_landing_zone_feeds_no_event_downstream(dagbag, stack):
    """Nightly snapshots land under landing/ in raw: nothing reaches the event copier's queue."""
    sqs, queue = stack["session"].client("sqs"), stack["queues"]["raw-events"]
    while batch := sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", []):
        for message in batch:  # moto's s3:TestEvent from provisioning
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
    assert run(dagbag).state == "success"
    assert len(objects(stack["s3"], RAW, "landing/")) == len(stack["files"])
    assert sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1).get("Messages", []) == []


def test_a_date_before_any_start_date_is_copied_not_silently_skipped(dagbag, stack):
    dag_run = run(dagbag, logical_date=datetime(2021, 6, 1, 20, 0, tzinfo=UTC))
    assert dag_run.state == "success"
    assert objects(stack["s3"], RAW) == expected_keys(stack["files"], day="year=2021/month=06/day=01")


BAD_CONFIGS = {
    "unreadable-json": ('{"datasets": [', "not valid JSON"),
    "missing-field": (
        json.dumps(
            {
                "datasets": [
                    {
                        "name": "movies",
                        "source_bucket": SOURCE,
                        "source_prefix": "movielens/movies",
                        "target_prefix": "landing",
                    }
                ]
            }
        ),
        "dataset 'movies': missing field 'target_bucket'",
    ),
    "unknown-bucket": (
        json.dumps(
            {
                "datasets": [
                    {
                        "name": "movies",
                        "source_bucket": SOURCE,
                        "source_prefix": "movielens/movies",
                        "target_bucket": "acme-does-not-exist",
                        "target_prefix": "landing",
                    }
                ]
            }
        ),
        "dataset 'movies': field 'target_bucket': bucket 'acme-does-not-exist' does not exist",
    ),
    # It would feed the event copier (and Snowflake) every night.
    "target-under-raw-events": (
        json.dumps(
            {
                "datasets": [
                    {
                        "name": "movies",
                        "source_bucket": SOURCE,
                        "source_prefix": "movielens/movies",
                        "target_bucket": RAW,
                        "target_prefix": "events",
                    }
                ]
            }
        ),
        "dataset 'movies': field 'target_prefix' ('events'): its copies would land under "
        f"s3://{RAW}/events/movies/, inside events/ of the raw bucket",
    ),
    # Every night would copy the earlier nights' copies again.
    "target-overlaps-source": (
        json.dumps(
            {
                "datasets": [
                    {
                        "name": "movies",
                        "source_bucket": SOURCE,
                        "source_prefix": "movielens",
                        "target_bucket": SOURCE,
                        "target_prefix": "movielens/copies",
                    }
                ]
            }
        ),
        "dataset 'movies': field 'target_prefix' ('movielens/copies'): its copies would land under "
        f"s3://{SOURCE}/movielens/copies/movies/, which overlaps its own source s3://{SOURCE}/movielens/",
    ),
}


@pytest.mark.parametrize("case", BAD_CONFIGS, ids=list(BAD_CONFIGS))
def test_bad_config_fails_the_run_once_and_sends_the_failure(dagbag, stack, case):
    text, reason = BAD_CONFIGS[case]
    stack["s3"].put_object(Bucket=SOURCE, Key="configs/bad.json", Body=text.encode())
    dag_run = run(dagbag, config_uri=f"s3://{SOURCE}/configs/bad.json")

    assert dag_run.state == "failed"
    states = {ti.task_id: (ti.state, ti.try_number) for ti in dag_run.get_task_instances()}
    assert states["load_datasets"] == ("failed", 1), "a config error must not be retried"
    assert states["copy_dataset"][0] == "upstream_failed"
    assert states["notify_run"][0] == "success"
    assert states["all_datasets_copied"][0] == "failed"
    assert objects(stack["s3"], RAW) == {}
    assert [k for k in objects(stack["s3"], SOURCE) if "copies" in k] == [], "nothing copied"
    [(subject, message)] = summaries(stack)
    assert subject == "[conveyor] nightly_file_ingestion failed for 2024-03-05"
    assert message["status"] == "failed"
    [failure] = message["failures"]
    assert failure["subject"] == "config"
    assert reason in failure["error"]
    assert f"s3://{SOURCE}/configs/bad.json" in failure["error"] or case == "unknown-bucket"


def test_a_failing_dataset_fails_the_run_and_the_others_still_land(dagbag, stack, no_retries):
    # An archived (GLACIER) object cannot be copied until restored: CopyObject refuses it.
    stack["s3"].put_object(
        Bucket=SOURCE, Key="movielens/tags/archived.csv", Body=b"x", StorageClass="GLACIER"
    )
    dag_run = run(dagbag)

    assert dag_run.state == "failed"
    states = {(ti.task_id, ti.map_index): ti.state for ti in dag_run.get_task_instances()}
    assert sorted(s for (t, _), s in states.items() if t == "copy_dataset") == [
        "failed",
        "success",
        "success",
    ]
    assert states[("notify_run", -1)] == "success"
    landed = {k.split("/")[1] for k in objects(stack["s3"], RAW)}
    assert landed == {"movies", "ratings", "tags"}  # tags' good file landed; the archived one did not
    assert not any(k.endswith("archived.csv") for k in objects(stack["s3"], RAW))
    [(subject, message)] = summaries(stack)
    assert "failed" in subject
    assert {d["name"] for d in message["datasets"]} == {"movies", "ratings"}
    [failure] = message["failures"]
    assert failure["subject"] == "tags"
    assert "1 of 2 objects failed to copy: movielens/tags/archived.csv" in failure["error"]


def test_a_run_without_a_logical_date_is_refused_at_once_saying_what_to_pass(dagbag, stack):
    """Item 5: `"logical_date": null` (REST API) gives a run no data interval, so no date for
    the keys. Before, load_datasets passed and each copy_dataset failed (after its retries) on
    `None.tzinfo`; notify_run failed the same way, so no summary was sent."""
    dag_run = run(dagbag, logical_date=None)
    assert (dag_run.logical_date, dag_run.data_interval_end) == (None, None)
    assert dag_run.state == "failed"
    states = {ti.task_id: (ti.state, ti.try_number) for ti in dag_run.get_task_instances()}
    assert states["load_datasets"] == ("failed", 1), "refused at once, not retried"
    assert states["copy_dataset"][0] == "upstream_failed"
    assert states["notify_run"][0] == "success"
    assert objects(stack["s3"], RAW) == {}
    [(subject, message)] = summaries(stack)
    assert subject == f"[conveyor] nightly_file_ingestion failed for {dag_run.run_id}"
    assert message["date"] is None
    [failure] = message["failures"]
    assert failure["subject"] == "run"
    assert failure["error"].startswith(
        f"run {dag_run.run_id!r} of nightly_file_ingestion has no data interval: it was triggered "
        'without a logical date ("logical_date": null).'
    )
    assert "Trigger it again with a logical date" in failure["error"]
