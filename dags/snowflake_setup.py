"""
### Snowflake setup

Creates (or brings up to date) the Snowflake objects the loads need, from the SQL in
`include/sql/snowflake/`, in order: the database and schemas, the external stages over the
curated, stage and processed buckets, the raw and typed tables of the curated events (with the
rejected order events and the merge's watermark) and of the retail files, and the views the
Airflow merges read. Every statement is rerunnable (`IF NOT EXISTS`, `ADD COLUMN IF NOT EXISTS`
for columns added since, or `OR REPLACE` for views): run it after each deployment that changes
them.

Trigger it manually. Params:
* **storage_integration**: instead, only the storage integration and the grants the loader role
  needs (`setup/020_storage_integration.sql`: the integration, CREATE DATABASE, EXECUTE TASK,
  USAGE on the task warehouse). An admin's one-off: run it with **snowflake_conn_id**
  `snowflake_admin` (Terraform creates its secret empty; fill it with an ACCOUNTADMIN login); see
  docs/snowflake.md for the two-step trust with the IAM role Terraform creates.
* **snowpipe**: also create the Snowpipe path: named file formats, auto-ingest pipes on the SNS
  topics Terraform creates, append-only streams on the raw tables and tasks that merge each
  stream into its target with the same MERGE the Airflow DAGs run (tasks are replaced, so they
  always run the current MERGE). Use Snowpipe or the Airflow loads, not both: each keeps its own
  load history, so both would load every file into the raw tables twice.
* **snowflake_conn_id**: the connection to run as (default `snowflake_default`, the loader role,
  which then owns the objects it creates).

`render_sql` fills in the variables and splits the files into statements; `apply_sql` (the provider's
`SQLExecuteQueryOperator`) runs them in order: the Rendered Template view shows each statement.
Names come from the Variable `conveyor_snowflake` (database, integration, role, warehouse, topic
ARNs) and `conveyor_resource_prefix` (bucket names); the connection is `snowflake_default`.
"""

from __future__ import annotations

from airflow.providers.common.sql.operators.sql import SQLExecuteQueryOperator
from airflow.sdk import Param, dag, task

from conveyor import snowflake
from conveyor.defaults import DEFAULT_ARGS, Tag
from conveyor.resources import names_from_variable

DAG_ID = "snowflake_setup"


@dag(
    dag_id=DAG_ID,
    schedule=None,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=[Tag.CONVEYOR, Tag.SNOWFLAKE],
    doc_md=__doc__,
    params={
        "storage_integration": Param(
            False, type="boolean", title="Only the storage integration and account grants (ACCOUNTADMIN)"
        ),
        "snowpipe": Param(False, type="boolean", title="Create pipes, streams and tasks (the Snowpipe path)"),
        "snowflake_conn_id": Param(
            snowflake.SNOWFLAKE_CONN_ID, type="string", minLength=1, title="Snowflake connection to run as"
        ),
    },
)
def snowflake_setup():
    @task
    def render_sql(params=None) -> list[str]:
        """The files the Params ask for, with the Variable's variables filled in: their statements."""
        settings = snowflake.settings_from_variable()
        integration, snowpipe = params["storage_integration"], params["snowpipe"]
        snowflake.check_setup_settings(settings, integration=integration, snowpipe=snowpipe)
        files = snowflake.setup_files(integration, snowpipe)
        print(f"applying {', '.join(files)}")
        return snowflake.statements(files, settings.template_variables(names_from_variable()))

    # Every statement shows in the UI's Rendered Template view; the log has each as it runs.
    SQLExecuteQueryOperator(
        task_id="apply_sql",
        doc_md="Run the rendered statements in order, as the chosen connection.",
        conn_id="{{ params.snowflake_conn_id }}",
        sql=render_sql(),
        return_last=False,
        show_return_value_in_logs=True,
    )


snowflake_setup()
