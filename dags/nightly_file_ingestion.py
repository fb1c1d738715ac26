"""
### Nightly file ingestion

Copies every file of each configured dataset from its source bucket to the raw bucket, server-side,
at `<target_prefix>/<name>/year=YYYY/month=MM/day=DD/<path below source_prefix>`, dated by the UTC
date of the run's `data_interval_end`; then publishes one summary (or failure) message on the
notifications SNS topic.

* **Schedule**: 20:00 UTC daily, interval timetable: the 2024-03-05 20:00 run covers
  [03-04 20:00, 03-05 20:00) and writes `day=05`. Backfill any past date from the UI.
* **Config**: the `config_uri` Param of a manual run (`s3://bucket/key`), else the Variable
  `nightly_file_ingestion_config` (`s3://bucket/key`, or the config's JSON itself), else
  `include/config/nightly_file_ingestion.json`. Any other value fails the run saying so.
* **Params**: `datasets` runs only the named datasets.
* **Reruns** of an interval rewrite the same keys; bad config fails the run without retries and
  the failure message names the dataset and field. A target under a prefix that bucket
  notifications announce (raw `events/` feeds the event copier and Snowflake) or overlapping a
  source (every night would copy earlier copies again) is bad config.
* **A logical date is required**: a run triggered without one (REST API `"logical_date": null`)
  has no interval to date its keys by; `load_datasets` fails it at once saying what to pass.
* **Tasks**: `load_datasets` → `copy_dataset` (one per dataset) → `notify_run` (always runs,
  publishes the summary) → `all_datasets_copied` (fails the run if anything above failed).
* **Deadline**: the 20:00 run must be done by 22:00 UTC (`conveyor.nightly_file_ingestion_finish_by`,
  `HH:MM`); else a `deadline_missed` alert on the notifications topic.
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

from conveyor import alerts, config, deadlines, intervals, paths
from conveyor.defaults import DEFAULT_ARGS, Tag
from conveyor.keys import utc_date
from conveyor.nightly import ingest, summary
from conveyor.resources import AWS_CONN_ID, NIGHTLY_CONFIG_VARIABLE, names_from_variable

DAG_ID = "nightly_file_ingestion"
CRON = "0 20 * * *"
DEFAULT_CONFIG = "config/nightly_file_ingestion.json"


@dag(
    dag_id=DAG_ID,
    schedule=CronDataIntervalTimetable(CRON, timezone="UTC"),
    deadline=deadlines.by_time_of_day(DAG_ID, CRON),
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
            pattern=config.S3_URI_PATTERN,
        ),
    },
)
def nightly_file_ingestion():
    @task(retries=1)
    def load_datasets(params=None, ti=None, dag_run=None) -> list[dict]:
        """Read, validate and select the datasets to copy (a run without a data interval fails)."""
        with summary.record_failure(ti, "run"):
            intervals.require_data_interval(dag_run)
        with summary.record_failure(ti, "config"):
            s3 = S3Hook(aws_conn_id=AWS_CONN_ID).get_conn()
            try:
                text, origin = config.config_text(
                    s3,
                    default=paths.include_dir() / DEFAULT_CONFIG,
                    variable_name=NIGHTLY_CONFIG_VARIABLE,
                    variable=Variable.get(NIGHTLY_CONFIG_VARIABLE, default=None),
                    uri=params.get("config_uri"),
                )
                datasets = ingest.parse_config(text, origin=origin, names=names_from_variable())
                datasets = ingest.select_datasets(datasets, params.get("datasets"))
                ingest.check_buckets(s3, datasets)
            except config.ConfigError as exc:
                raise AirflowFailException(str(exc)) from exc  # retrying cannot fix the config
        return [d.to_dict() for d in datasets]

    @task(map_index_template="{{ dataset_name }}")
    def copy_dataset(dataset: dict, dag_run=None, ti=None) -> dict:
        """Copy one dataset's objects to their dated keys; fails if any object failed."""
        get_current_context()["dataset_name"] = dataset["name"]
        with summary.record_failure(ti, dataset["name"]):
            _, end = intervals.require_data_interval(dag_run)
            s3 = S3Hook(aws_conn_id=AWS_CONN_ID).get_conn()
            return ingest.ingest_dataset(s3, ingest.Dataset(**dataset), utc_date(end))

    @task(trigger_rule=TriggerRule.ALL_DONE)
    def notify_run(planned, results, dag_run=None, ti=None, data_interval_end=None) -> dict:
        """Publish one message for the run: per-dataset counts, or what failed and why."""
        message = summary.build_summary(
            dag_id=DAG_ID,
            run_id=dag_run.run_id,
            interval_end=data_interval_end,  # None for a run without a logical date (refused)
            planned=planned,
            results=results,
            recorded=summary.recorded_failures(ti),
        )
        alerts.publish(message, alerts.notifications_topic_arn())
        return message

    # Its failure repeats what notify_run published and the failed task alerted: no alert of its own.
    @task(trigger_rule=TriggerRule.ALL_DONE, on_failure_callback=[])
    def all_datasets_copied(message: dict | None) -> None:
        """Fail the run when any dataset failed or the notification could not be sent."""
        if failed := summary.run_outcome(message):
            raise AirflowFailException(failed)

    datasets = load_datasets()
    copies = copy_dataset.expand(dataset=datasets)
    message = notify_run(datasets, copies)  # reports whatever happened upstream
    chain(datasets, copies, message, all_datasets_copied(message))  # the last gives the run its state


nightly_file_ingestion()
