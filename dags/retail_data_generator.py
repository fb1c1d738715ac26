"""
### Retail data generator

Writes random but realistic retail data to the inbound bucket, as the retail system's generator
did: one users file under `user/` and one transactions file under `transactions/`, CSV or
newline-delimited JSON. Deterministic: the same seed and counts give the same bytes; the key
carries the run's timestamp and the seed. `inbound_to_stage` picks the files up.

Trigger it manually with the Params below.
"""

from __future__ import annotations

from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.sdk import Param, dag, task

from conveyor import retail
from conveyor.defaults import DEFAULT_ARGS, START_DATE, Tag
from conveyor.resources import AWS_CONN_ID, names_from_variable

DAG_ID = "retail_data_generator"
CONTENT_TYPES = {"csv": "text/csv", "json": "application/x-ndjson"}


@dag(
    dag_id=DAG_ID,
    schedule=None,
    start_date=START_DATE,
    catchup=False,
    default_args=DEFAULT_ARGS,
    tags=[Tag.CONVEYOR, Tag.RETAIL, Tag.S3],
    doc_md=__doc__,
    params={
        "users": Param(100, type="integer", minimum=1, maximum=1_000_000, title="Number of users"),
        "transactions": Param(
            1_000, type="integer", minimum=0, maximum=10_000_000, title="Number of transactions"
        ),
        "seed": Param(42, type="integer", title="Random seed", description="Same seed, same data."),
        "format": Param("csv", type="string", enum=list(retail.FORMATS), title="File format"),
    },
)
def retail_data_generator():
    @task
    def write_inbound_files(params=None, dag_run=None) -> dict:
        names = names_from_variable()
        files = retail.generate(params["users"], params["transactions"], params["seed"], params["format"])
        stamp = dag_run.run_after.strftime("%Y%m%dT%H%M%SZ")
        keys = retail.inbound_keys(stamp, params["seed"], params["format"])
        s3 = S3Hook(aws_conn_id=AWS_CONN_ID).get_conn()
        for kind, body in files.items():
            s3.put_object(
                Bucket=names.bucket("inbound"),
                Key=keys[kind],
                Body=body,
                ContentType=CONTENT_TYPES[params["format"]],
                Metadata={"generator-seed": str(params["seed"])},
            )
        return {
            "bucket": names.bucket("inbound"),
            "keys": keys,
            "bytes": {k: len(v) for k, v in files.items()},
        }

    write_inbound_files()


retail_data_generator()
