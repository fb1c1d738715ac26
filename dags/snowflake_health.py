"""
### Snowflake health (the Snowpipe path's operations)

The Snowpipe path loads and merges without Airflow, so nothing else notices when it stops. Every
hour this checks, for the hour that ended:

* **pipes** (`SYSTEM$PIPE_STATUS`): not `RUNNING`, an error, or a file waiting for over an hour;
* **pipe loads** (`COPY_HISTORY`): each file a pipe did not load, with its first error;
* **tasks** (`SHOW TASKS`, `TASK_HISTORY`): a suspended task (Snowflake suspends one after 10
  failed runs in a row), each task's failed runs with the last error;
* **streams** (`SHOW STREAMS`): stale (its unmerged rows can no longer be read through it), or
  stale within two days;
* **rejected order events** (`EVENTS.ORDER_REJECTS`) nobody has reported yet (on the Airflow path
  `curated_to_snowflake` reports them first).

When something is wrong it publishes one alert on the notifications topic naming each problem
and what to do (`docs/snowflake.md`, Operations); the run succeeds, having checked. A run that
cannot check (Snowflake unreachable, a missing privilege) fails and the usual failure alert
fires. With no pipes, tasks or streams (the Airflow path) only rejected rows are checked.
Backfill within the last 7 days (Snowflake keeps task history 7 days, copy history 14).
Deadline: a run must be done within 30 min of its interval's end
(`conveyor.snowflake_health_deadline_seconds`); else a `deadline_missed` alert.
"""

from __future__ import annotations

from datetime import timedelta

from airflow.sdk import CronDataIntervalTimetable, dag, get_current_context, task

from conveyor import alerts, deadlines, snowflake
from conveyor import snowflake_health as health
from conveyor.defaults import DEFAULT_ARGS, Tag
from conveyor.resources import AWS_CONN_ID, names_from_variable

DAG_ID = "snowflake_health"
CRON = "0 * * * *"


@dag(
    dag_id=DAG_ID,
    schedule=CronDataIntervalTimetable(CRON, timezone="UTC"),
    deadline=deadlines.after_interval_end(DAG_ID, CRON),
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=[Tag.CONVEYOR, Tag.SNOWFLAKE, Tag.SNS],
    doc_md=__doc__,
)
def snowflake_health():
    @task
    def check(ti=None) -> dict:
        """Check the Snowpipe path for the hour that ended; the alert to send (empty: healthy)."""
        context = get_current_context()
        start, end = context.get("data_interval_start"), context.get("data_interval_end")
        if start is None or end is None:  # a run created without a logical date: the hour before it
            end = context["dag_run"].run_after
            start = end - timedelta(hours=1)
        variables = snowflake.settings_from_variable().template_variables(names_from_variable())
        hook = snowflake.hook()

        def run(name: str, parameters: dict | None = None) -> list[list[dict]]:
            return snowflake.run_script(hook, snowflake.render(name, variables), parameters)

        gathered = health.gather(run, start, end)
        rejects = snowflake.claim_order_rejects(hook, variables, by=snowflake.reporter(ti))
        found = health.problems(gathered, rejects, at=end)
        for problem in found:
            print(problem.line())
        print(f"{len(found)} problem(s) in [{start.isoformat()}, {end.isoformat()})")
        message = health.alert(found, dag_id=DAG_ID, run_id=context["run_id"], interval=(start, end))
        return message if found else {}

    @task
    def alert(message: dict) -> str | None:
        """Publish the alert on the notifications topic when there is one."""
        if not message:
            print("healthy: nothing to report")
            return None
        message_id = health.publish(message, alerts.notifications_topic_arn(), AWS_CONN_ID)
        print(f"published {message_id}: {message['summary']}")
        return message_id

    alert(check())


snowflake_health()
