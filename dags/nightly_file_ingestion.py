"""
### Nightly file ingestion

Copies every file of each configured dataset from its source bucket to the raw bucket, server-side,
at `<target_prefix>/<name>/year=YYYY/month=MM/day=DD/<path below source_prefix>`, dated by the UTC
date of the run's `data_interval_end`; then publishes one summary (or failure) message on the
notifications SNS topic.

* **Schedule**: 20:00 UTC daily, interval timetable: the 2024-03-05 20:00 run covers
  [03-04 20:00, 03-05 20:00) and writes `day=05`. Backfill any past date from the UI.
* **Config**: `include/config/nightly_file_ingestion.json`, or the `s3://bucket/key` in the
  Variable `nightly_file_ingestion_config`, or the `config_uri` Param of a manual run.
* **Params**: `datasets` runs only the named datasets.
* **Reruns** of an interval rewrite the same keys; bad config fails the run without retries and
  the failure message names the dataset and field.
* **Tasks**: `load_datasets` → `copy_dataset` (one per dataset) → `notify_run` (always runs,
  publishes the summary) → `all_datasets_copied` (fails the run if anything above failed).
"""

from __future__ import annotations

from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.sdk import (
    CronDataIntervalTimetable,
    Param,
    TriggerRule,
    Variable,
    chain,
    dag,
    get_current_context,
    task,
)
from airflow.sdk.exceptions import AirflowFailException

from conveyor import ingestion, notify, paths
from conveyor.defaults import DEFAULT_ARGS, START_DATE, Tag
from conveyor.resources import AWS_CONN_ID, NIGHTLY_CONFIG_VARIABLE

DAG_ID = "nightly_file_ingestion"
DEFAULT_CONFIG = "config/nightly_file_ingestion.json"


@dag(
    dag_id=DAG_ID,
    schedule=CronDataIntervalTimetable("0 20 * * *", timezone="UTC"),
    start_date=START_DATE,
    catchup=False,
    max_active_runs=3,
    default_args=DEFAULT_ARGS,
    tags=[Tag.CONVEYOR, Tag.INGESTION, Tag.S3, Tag.SNS],
    doc_md=__doc__,
    params={
        "datasets": Param(
            [],
            type="array",
            items={"type": "string"},
            title="Datasets",
            description="Names of the datasets to copy; empty copies every dataset in the config.",
        ),
        "config_uri": Param(
            None,
            type=["null", "string"],
            title="Config URI",
            description="s3://bucket/key of a config to use for this run instead of the Variable/default.",
        ),
    },
)
def nightly_file_ingestion():
    @task(retries=1)
    def load_datasets(params=None, ti=None) -> list[dict]:
        """Read and validate the config, select the requested datasets, check their buckets."""
        with notify.record_failure(ti, "config"):
            location = (
                params.get("config_uri")
                or Variable.get(NIGHTLY_CONFIG_VARIABLE, default=None)
                or str(paths.include_dir() / DEFAULT_CONFIG)
            )
            s3 = S3Hook(aws_conn_id=AWS_CONN_ID).get_conn()
            try:
                datasets = ingestion.parse_config(ingestion.read_config_text(location, s3), origin=location)
                datasets = ingestion.select_datasets(datasets, params.get("datasets"))
                ingestion.check_buckets(s3, datasets)
            except ingestion.ConfigError as exc:
                raise AirflowFailException(str(exc)) from exc  # retrying cannot fix the config
        return [d.to_dict() for d in datasets]

    @task(map_index_template="{{ dataset_name }}")
    def copy_dataset(dataset: dict, data_interval_end=None, ti=None) -> dict:
        """Copy one dataset's objects to their dated keys; fails if any object failed."""
        get_current_context()["dataset_name"] = dataset["name"]
        with notify.record_failure(ti, dataset["name"]):
            s3 = S3Hook(aws_conn_id=AWS_CONN_ID).get_conn()
            return ingestion.ingest_dataset(
                s3, ingestion.Dataset(**dataset), ingestion.transfer_date(data_interval_end)
            )

    @task(trigger_rule=TriggerRule.ALL_DONE)
    def notify_run(dag_run=None, ti=None, data_interval_end=None) -> dict:
        """Publish one message for the run: per-dataset counts, or what failed and why."""
        planned = notify.as_list(ti.xcom_pull(task_ids="load_datasets"))
        results = notify.as_list(ti.xcom_pull(task_ids="copy_dataset"))
        failures = notify.as_list(ti.xcom_pull(task_ids="load_datasets", key=notify.ERROR_XCOM_KEY))
        failures += notify.as_list(ti.xcom_pull(task_ids="copy_dataset", key=notify.ERROR_XCOM_KEY))
        accounted = {r["name"] for r in results} | {f["subject"] for f in failures}
        failures += [
            {"subject": d["name"], "error": "did not run (an upstream task failed)"}
            for d in planned
            if d["name"] not in accounted
        ]
        summary = notify.build_summary(
            dag_id=DAG_ID,
            run_id=dag_run.run_id,
            run_date=ingestion.transfer_date(data_interval_end).isoformat(),
            results=results,
            failures=failures,
        )
        notify.publish(summary, notify.notifications_topic_arn())
        return summary

    @task(trigger_rule=TriggerRule.ALL_DONE)
    def all_datasets_copied(ti=None) -> None:
        """Fail the run when any dataset failed or the notification could not be sent."""
        summary = ti.xcom_pull(task_ids="notify_run")
        if summary is None:
            raise AirflowFailException("the run's notification was not published; see notify_run")
        if summary["status"] != "succeeded":
            failed = "; ".join(f"{f['subject']}: {f['error']}" for f in summary["failures"])
            raise AirflowFailException(f"run failed (notification sent): {failed}")

    copies = copy_dataset.expand(dataset=load_datasets())
    # notify_run reports whatever happened upstream; the last task gives the run its state.
    chain(copies, notify_run(), all_datasets_copied())


nightly_file_ingestion()
