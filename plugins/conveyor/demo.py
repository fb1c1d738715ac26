"""`make demo`: put sample files in place on the local stack, run the pipelines through Airflow,
and print what landed where.

    python -m conveyor.demo [--date 2024-03-05T20:00:00+00:00]

Expects the stack to be up (`make demo` runs `make services` first).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import boto3

from conveyor import sample_data
from conveyor.local import stack
from conveyor.local.provision import NOTIFICATIONS_INBOX

DEFAULT_DATE = "2024-03-05T20:00:00+00:00"


def _clients(info: dict):
    session = boto3.Session(
        aws_access_key_id=stack.ACCESS_KEY, aws_secret_access_key=stack.ACCESS_KEY, region_name=info["region"]
    )
    return (session.client(name, endpoint_url=info["endpoint_url"]) for name in ("s3", "sqs"))


def _drain(sqs, queue_url: str) -> list[dict]:
    out = []
    while batch := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
        for message in batch:
            out.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return out


def run_dag(dag_id: str, logical_date: str) -> float:
    """`airflow dags test` on the stack, as a user would run it; returns seconds taken."""
    env = {**os.environ, **stack.environment(stack.load_state())}
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    log = stack.local_dir() / f"demo-{dag_id}.log"
    started = time.monotonic()
    with log.open("w") as out:
        result = subprocess.run(
            ["airflow", "dags", "test", dag_id, logical_date], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    elapsed = time.monotonic() - started
    if result.returncode:
        tail = "".join(log.read_text().splitlines(keepends=True)[-40:])
        raise SystemExit(f"{dag_id} failed (exit {result.returncode}); last lines of {log}:\n{tail}")
    return elapsed


def nightly_file_ingestion(info: dict, logical_date: str) -> None:
    s3, sqs = _clients(info)
    source = info["buckets"]["source"]
    files = sample_data.movielens_files()
    sample_data.upload(s3, source, files)
    print(
        f"• put {len(files)} MovieLens-style files ({sum(map(len, files.values())):,} bytes) in s3://{source}/movielens/"
    )
    _drain(sqs, info["queues"][NOTIFICATIONS_INBOX])

    seconds = run_dag("nightly_file_ingestion", logical_date)
    print(f"• ran nightly_file_ingestion for {logical_date} through Airflow in {seconds:.1f}s")

    messages = _drain(sqs, info["queues"][NOTIFICATIONS_INBOX])
    summary = json.loads(messages[-1]["Message"]) if messages else None
    if not summary:
        raise SystemExit("no notification arrived on the notifications topic")
    print(f"• SNS notification: {messages[-1]['Subject']}")
    print(f"  {'dataset':<10} {'objects':>7} {'bytes':>9}  landed at")
    for dataset in summary["datasets"]:
        print(f"  {dataset['name']:<10} {dataset['objects']:>7} {dataset['bytes']:>9,}  {dataset['target']}")
    raw = info["buckets"]["raw"]
    landed = s3.list_objects_v2(Bucket=raw, Prefix="landing/").get("Contents", [])
    dated = [o["Key"] for o in landed if f"day={logical_date[8:10]}/" in o["Key"]]
    print(f"  keys in s3://{raw}/ for this run:")
    for key in dated:
        print(f"    {key}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conveyor.demo", description=__doc__)
    parser.add_argument("--date", default=DEFAULT_DATE, help="logical date of the runs (default %(default)s)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    info = stack.describe()
    print(f"Conveyor demo on the local stack ({info['endpoint_url']}, Airflow home {info['airflow_home']})\n")
    print("1. nightly_file_ingestion: source bucket -> raw bucket, dated keys, SNS summary")
    nightly_file_ingestion(info, args.date)
    print(
        f"\nDemo finished in {time.monotonic() - started:.0f}s. Explore: `make airflow` (UI), "
        "`source .local/env.sh`, `python -m conveyor.local describe`."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
