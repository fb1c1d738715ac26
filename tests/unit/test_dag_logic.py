"""The logic issue 17 moved out of DAG files: nightly failure accounting, the Snowflake setup's
settings checks, a run's window plan, the gate's window literal, the one SQL lookup."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from conveyor import paths, snowflake
from conveyor.config import ConfigError
from conveyor.nightly import summary
from conveyor.totesys import gate, star, windows

START, END = datetime(2026, 11, 1, 20, tzinfo=UTC), datetime(2026, 11, 2, 20, tzinfo=UTC)
LAG = timedelta(seconds=60)


def dataset(name: str, objects: int = 1, size: int = 10) -> dict:
    return {"name": name, "objects": objects, "bytes": size}


def test_every_planned_dataset_is_accounted_for_copied_failed_or_did_not_run():
    recorded = [{"subject": "films", "error": "AccessDenied"}]
    message = summary.build_summary(
        dag_id="nightly_file_ingestion",
        run_id="r1",
        interval_end=END,
        planned=[{"name": n} for n in ("books", "films", "music")],
        results=[dataset("books", 2, 30), None],  # a failed map index has no result
        recorded=recorded,
    )
    assert message["status"] == "failed"
    assert message["date"] == "2026-11-02"
    assert message["failures"] == [*recorded, {"subject": "music", "error": summary.DID_NOT_RUN}]
    assert message["totals"] == {"objects": 2, "bytes": 30}
    assert summary.run_outcome(message) == (
        f"run failed (notification sent): films: AccessDenied; music: {summary.DID_NOT_RUN}"
    )


def test_a_run_that_copied_everything_succeeds_and_one_without_a_message_fails():
    message = summary.build_summary(
        dag_id="d", run_id="r", interval_end=None, planned=dataset("a"), results=dataset("a"), recorded=[]
    )
    assert (message["status"], message["date"], summary.run_outcome(message)) == ("succeeded", None, None)
    assert "not published" in summary.run_outcome(None)


def test_a_mapped_output_is_read_by_index_once():
    class Lazy(list):  # like LazyXComSequence: iterating it asks for one past the end
        def __iter__(self):
            raise AssertionError("iterated")

    assert summary.as_list(Lazy([dataset("a"), None])) == [dataset("a")]


def test_recorded_failures_come_from_every_upstream_task():
    # A stand-in for the task instance's XCom pull (the DAG's integration tests run the real one).
    class TI:
        class task:
            upstream_task_ids = frozenset({"load_datasets", "copy_dataset"})

        def xcom_pull(self, task_ids, key):
            self.asked = (task_ids, key)
            return [None, {"subject": "x", "error": "e"}]

    ti = TI()
    assert summary.recorded_failures(ti) == [{"subject": "x", "error": "e"}]
    assert ti.asked == (["copy_dataset", "load_datasets"], summary.ERROR_XCOM_KEY)


@pytest.mark.parametrize(
    ("params", "settings", "missing"),
    [
        ({"integration": True, "snowpipe": False}, {"storage_integration": "S3"}, "storage_role_arn"),
        ({"integration": False, "snowpipe": True}, {"topics": {"curated": "arn:c"}}, '"topics"'),
    ],
)
def test_setup_refuses_settings_that_lack_what_its_params_need(params, settings, missing):
    with pytest.raises(ConfigError, match=missing) as raised:
        snowflake.check_setup_settings(snowflake.SnowflakeSettings(**settings), **params)
    assert snowflake.SNOWFLAKE_VARIABLE in str(raised.value)
    complete = snowflake.SnowflakeSettings(
        storage_integration="S3", storage_role_arn="arn:r", topics={"curated": "arn:c", "stage": "arn:s"}
    )
    snowflake.check_setup_settings(complete, **params)  # nothing missing: no error


def test_the_first_scheduled_run_takes_a_full_snapshot_and_later_ones_widen_from_the_watermark():
    first = windows.plan(START, END, LAG, run_type="scheduled", watermark=None, full_snapshot=False)
    assert first.full_snapshot and first.name.endswith("-full")
    mark = START - timedelta(hours=5)
    later = windows.plan(START, END, LAG, run_type="scheduled", watermark=mark, full_snapshot=False)
    assert (later.start, later.widened_from, later.full_snapshot) == (mark, START - LAG, False)
    manual = windows.plan(START, END, LAG, run_type="manual", watermark=None, full_snapshot=False)
    assert (manual.start, manual.full_snapshot) == (START - LAG, False)


def test_the_gate_quotes_the_window_name_it_is_given():
    checks = gate.window_checks("x' OR '1'='1")
    assert len(checks) == len(star.DIMENSIONS) + len(star.FACTS)
    assert "'x'' OR ''1''=''1'" in checks[0]["table"] and "'x' OR" not in checks[0]["table"]


def test_every_sql_file_is_found_one_way():
    assert paths.sql_files("warehouse", ["dim_staff"]) == ["warehouse/dim_staff.sql"]
    assert paths.sql_path("warehouse/dim_staff.sql") == paths.sql_path("warehouse", "dim_staff.sql")
    assert paths.sql_path("warehouse/dim_staff.sql").is_file()
    assert (paths.sql_path("snowflake") / snowflake.SETUP_FILES[0]).is_file()
