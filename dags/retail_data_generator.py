"""
### Retail data generator

Writes random but realistic retail data to the inbound bucket, as the retail system's generator
did: one users file under `user/` and one transactions file under `transactions/`, CSV or
newline-delimited JSON. Deterministic: the same seed and counts give the same bytes; the key
carries the run's timestamp and the seed. `inbound_to_stage` picks the files up.

Rows are generated and uploaded as a stream (S3 multipart, one part in memory), so a worker's
memory stays flat for any number of users and transactions.

Trigger it manually with the Params below.
"""

from __future__ import annotations

from airflow.providers.amazon.aws.hooks.s3 import S3Hook
from airflow.sdk import Param, dag, task

from conveyor.defaults import DEFAULT_ARGS, Tag
from conveyor.resources import AWS_CONN_ID, names_from_variable
from conveyor.retail import generator
from conveyor.s3 import upload_chunks

DAG_ID = "retail_data_generator"


@dag(
    dag_id=DAG_ID,
    schedule=None,
    catchup=False,
    default_args=DEFAULT_ARGS,
    tags=[Tag.CONVEYOR, Tag.RETAIL, Tag.S3],
    doc_md=__doc__,
    params={
        "users": Param(
            100,
            type="integer",
            minimum=1,
            maximum=generator.MAX_USERS,
            title="Number of users",
            description=f"1 to {generator.MAX_USERS:,}.",
        ),
        "transactions": Param(
            1_000,
            type="integer",
            minimum=0,
            maximum=generator.MAX_TRANSACTIONS,
            title="Number of transactions",
            description=f"0 to {generator.MAX_TRANSACTIONS:,} (about a minute at the maximum).",
        ),
        "seed": Param(42, type="integer", title="Random seed", description="Same seed, same data."),
        "format": Param("csv", type="string", enum=list(generator.FORMATS), title="File format"),
    },
)
def retail_data_generator():
    @task
    def write_inbound_files(params=None, dag_run=None) -> dict:
        """Write random user and transaction files to the inbound bucket (same seed, same data)."""
        inbound = names_from_variable().bucket("inbound")
        fmt, seed = params["format"], params["seed"]
        stamp = dag_run.run_after.strftime("%Y%m%dT%H%M%SZ")
        keys = generator.inbound_keys(stamp, seed, fmt)
        s3 = S3Hook(aws_conn_id=AWS_CONN_ID).get_conn()
        written = {}
        for kind, chunks in generator.stream(params["users"], params["transactions"], seed, fmt).items():
            written[kind] = upload_chunks(
                s3,
                inbound,
                keys[kind],
                chunks,
                ContentType=generator.CONTENT_TYPES[fmt],
                Metadata={"generator-seed": str(seed)},
            )
        return {"bucket": inbound, "keys": keys, "bytes": written}

    write_inbound_files()


retail_data_generator()
