"""`make demo`: put sample files in place on the local stack, run the pipelines through Airflow,
and print what landed where.

    python -m conveyor_local.demo [--date 2026-03-05T20:00:00+00:00]

The runs' logical date defaults to yesterday 20:00 UTC (the nightly schedule's time): a recent,
finished interval, so the UI's run durations and charts read sensibly.

Each run is `airflow dags test`, the command a user types. The demo runs its commands in two
Airflow processes (`--serve`: one process runs the commands it is sent one after another, each
exactly as the CLI runs it, its output to `.local/demo-<dag_id>.log`), so Airflow's import and
start-up are paid twice, not once per run; and the two run side by side: section 4 (totesys_etl)
in one, sections 1-3 in the other. They touch different buckets, databases and Snowflake
schemas; the notifications queue they share is read for each DAG's own messages (`dag_id`).
Each section prints in order, when it is done.

Expects the stack to be up (`make demo` runs `make services` first).
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import logging
import os
import subprocess
import sys
import threading
import time
import traceback
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3

from conveyor_local import sample_data, stack
from conveyor_local.provision import NOTIFICATIONS_INBOX


def recent_date() -> str:
    """Yesterday 20:00 UTC, as an ISO logical date."""
    yesterday = datetime.now(UTC) - timedelta(days=1)
    return yesterday.replace(hour=20, minute=0, second=0, microsecond=0).isoformat()


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


_kept: dict[str, list[dict]] = {}  # notifications read off the queue, by the DAG that sent them
_kept_lock = threading.Lock()


def _notifications(sqs, info: dict, dag_id: str) -> list[dict]:
    """The messages `dag_id`'s runs published on the notifications topic since the last call (SNS
    envelopes). Sections run side by side and read the one queue: each takes its DAG's messages
    (their dag_id attribute) and leaves the others' for them."""
    with _kept_lock:
        for message in _drain(sqs, info["queues"][NOTIFICATIONS_INBOX]):
            sender = message.get("MessageAttributes", {}).get("dag_id", {}).get("Value")
            _kept.setdefault(sender, []).append(message)
        return _kept.pop(dag_id, [])


class _Runner:
    """One Airflow process (`python -m conveyor_local.demo --serve`) on the stack's environment,
    running the `airflow dags test` commands it is sent, one at a time."""

    def __init__(self):
        env = {**os.environ, **stack.environment(stack.load_state())}
        env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "conveyor_local.demo", "--serve"],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def run(self, argv: list[str], log: Path) -> int:
        self.proc.stdin.write(json.dumps({"argv": argv, "log": str(log)}) + "\n")
        self.proc.stdin.flush()
        reply = self.proc.stdout.readline()
        if not reply:
            return self.proc.wait() or 1  # the process died: its log says why
        return json.loads(reply)["rc"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


_lane = threading.local()  # .runner: the Airflow process of this thread's lane


def run_dag(dag_id: str, logical_date: str, conf: str | None = None) -> float:
    """`airflow dags test` on the stack, as a user would run it; returns seconds taken."""
    log = stack.local_dir() / f"demo-{dag_id}.log"
    started = time.monotonic()
    argv = ["dags", "test", dag_id, logical_date, *(["--conf", conf] if conf else [])]
    returncode = _lane.runner.run(argv, log)
    elapsed = time.monotonic() - started
    if returncode:
        tail = "".join(log.read_text().splitlines(keepends=True)[-40:])
        raise SystemExit(f"{dag_id} failed (exit {returncode}); last lines of {log}:\n{tail}")
    return elapsed


def serve() -> int:
    """`--serve`: run each `airflow dags test` command read from stdin (JSON: argv, log) in this
    process, as `airflow` runs it, its output to the log file; answer each with its exit status."""
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    from airflow import configuration
    from airflow.cli import cli_parser
    from airflow.configuration import write_default_airflow_configuration_if_needed

    configuration.conf  # noqa: B018 (read, as the CLI's main does first)
    write_default_airflow_configuration_if_needed()
    parser = cli_parser.get_parser()
    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        with open(request["log"], "w") as log:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            try:
                # As `airflow` sees its own command line: the DAG files ask whether they are parsed by
                # `airflow dags test` (conveyor.deadlines.under_dags_test).
                sys.argv = ["airflow", *request["argv"]]
                args = parser.parse_args(request["argv"])
                args.func(args)
                returncode = 0
            except SystemExit as stop:  # what `airflow` exits with
                if isinstance(stop.code, str):
                    print(stop.code, file=sys.stderr)
                returncode = stop.code if isinstance(stop.code, int) else int(stop.code is not None)
            except Exception:
                traceback.print_exc()
                returncode = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
        replies.write(json.dumps({"rc": returncode}) + "\n")
    return 0


def nightly_file_ingestion(info: dict, logical_date: str) -> None:
    s3, sqs = _clients(info)
    source = info["buckets"]["source"]
    files = sample_data.movielens_files()
    sample_data.upload(s3, source, files)
    print(
        f"• put {len(files)} MovieLens-style files ({sum(map(len, files.values())):,} bytes) in s3://{source}/movielens/"
    )
    _notifications(sqs, info, "nightly_file_ingestion")

    seconds = run_dag("nightly_file_ingestion", logical_date)
    print(f"• ran nightly_file_ingestion for {logical_date} through Airflow in {seconds:.1f}s")

    messages = _notifications(sqs, info, "nightly_file_ingestion")
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


def s3_event_copy(info: dict, logical_date: str) -> None:
    s3, sqs = _clients(info)
    raw, curated = info["buckets"]["raw"], info["buckets"]["curated"]
    drops = {
        "events/orders/order 1001.json": json.dumps(
            {
                "order_id": 1001,
                "customer": {"id": "c-17", "country": "GB"},
                "currency": "GBP",
                "total": "19.98",
                "ordered_at": f"{logical_date[:10]}T09:30:00+00:00",
                "items": [
                    {"sku": "BK-12", "qty": 1, "price": "12.00"},
                    {"sku": "PN-3", "qty": 2, "price": "3.99"},
                ],
            }
        ).encode(),
        "events/orders/ünïcode/order 1002.json": json.dumps(
            {
                "order_id": 1002,
                "customer": {"id": "c-4", "country": "FR"},
                "currency": "EUR",
                "total": "5.00",
                "ordered_at": f"{logical_date[:10]}T11:02:00+00:00",
                "items": [{"sku": "CF-1", "qty": 1, "price": "5.00"}],
            }
        ).encode(),
    }
    for key, body in drops.items():
        s3.put_object(Bucket=raw, Key=key, Body=body, ContentType="application/json")
    print(f"• put {len(drops)} objects in s3://{raw}/events/; S3 notified the raw-events SNS topic, which")
    print(
        "  delivered to the raw-events SQS queue (step 1's landing/ files notify no one: only events/ does)"
    )
    seconds = run_dag("s3_event_copy", logical_date)
    print(f"• ran s3_event_copy through Airflow in {seconds:.1f}s")
    landed = [o["Key"] for o in s3.list_objects_v2(Bucket=curated).get("Contents", [])]
    waiting = sqs.get_queue_attributes(
        QueueUrl=info["queues"]["raw-events"], AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]["ApproximateNumberOfMessages"]
    from_step_1 = [k for k in landed if k.startswith("landing/")]
    if from_step_1:
        raise SystemExit(f"the nightly landing/ files reached curated: {from_step_1[:3]}")
    print(f"  s3://{curated}/ holds {len(landed)} objects, exactly the events/ drops:")
    for key, body in drops.items():
        same = s3.get_object(Bucket=curated, Key=key)["Body"].read() == body
        print(f"    {key}  ({'byte-identical' if same else 'DIFFERENT from raw'})")
    print(f"  messages left on the raw-events queue: {waiting}")

    seconds = run_dag("curated_to_snowflake", logical_date)
    print(
        f"• ran curated_to_snowflake in {seconds:.1f}s: COPY INTO EVENTS.RAW_EVENTS (VARIANT), MERGE flattening"
    )
    rows = snowflake_query(
        info,
        "SELECT o.order_id, o.customer_id, o.country, o.currency, o.total, o.item_count, count(i.sku) "
        "FROM CONVEYOR.EVENTS.ORDERS o LEFT JOIN CONVEYOR.EVENTS.ORDER_ITEMS i USING (order_id) "
        "GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY 1",
    )
    [(raw_rows,)] = snowflake_query(info, "SELECT count(*) FROM CONVEYOR.EVENTS.RAW_EVENTS")
    print(
        f"  Snowflake (fake): {raw_rows} raw JSON rows; typed EVENTS.ORDERS (with EVENTS.ORDER_ITEMS lines):"
    )
    for order_id, customer, country, currency, total, items, lines in rows:
        print(
            f"    order {order_id}  {customer:<5} {country} {currency} {total:>7}  {items} item(s), {lines} line row(s)"
        )
    if len(rows) != len(drops):
        raise SystemExit(f"expected {len(drops)} orders in Snowflake, found {len(rows)}")


def snowflake_query(info: dict, sql: str) -> list[tuple]:
    """Rows from the local fake Snowflake (as snowflake_default reaches it)."""
    from conveyor_local import fake_snowflake

    # The connector logs two INFO lines (its version, "Connecting to GLOBAL Snowflake domain") per
    # connection: not the demo's story.
    logging.getLogger("snowflake.connector").setLevel(logging.WARNING)
    with fake_snowflake.connect(info["snowflake"]["port"]) as connection:
        return connection.cursor().execute(sql).fetchall()


def retail(info: dict, logical_date: str) -> None:
    s3, _ = _clients(info)
    env_conf = '{"users": 25, "transactions": 250, "seed": 7, "format": "csv"}'
    seconds = run_dag("retail_data_generator", logical_date, conf=env_conf)
    inbound = [o["Key"] for o in s3.list_objects_v2(Bucket=info["buckets"]["inbound"]).get("Contents", [])]
    print(
        f"• ran retail_data_generator (25 users, 250 transactions, seed 7) in {seconds:.1f}s: {', '.join(inbound)}"
    )
    seconds = run_dag("inbound_to_stage", logical_date)
    print(f"• ran inbound_to_stage in {seconds:.1f}s")
    for kind in ("inbound", "stage", "archive"):
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=info["buckets"][kind]).get("Contents", [])]
        print(
            f"  s3://{info['buckets'][kind]}/: {len(keys)} file(s)" + "".join(f"\n    {k}" for k in keys[-4:])
        )
    seconds = run_dag("stage_to_snowflake", logical_date)
    print(
        f"• ran stage_to_snowflake in {seconds:.1f}s: COPY INTO RETAIL.*_RAW, the tasks' MERGE into the targets"
    )
    for table in ("USERS_RAW", "USERS", "TRANSACTIONS_RAW", "TRANSACTIONS"):
        [(count,)] = snowflake_query(info, f"SELECT count(*) FROM CONVEYOR.RETAIL.{table}")
        print(f"  Snowflake (fake) RETAIL.{table:<17} {count:>5} rows")
    top = snowflake_query(
        info,
        "SELECT u.country, t.currency, count(*), sum(t.quantity * t.unit_price) FROM CONVEYOR.RETAIL.TRANSACTIONS t "
        "JOIN CONVEYOR.RETAIL.USERS u USING (user_id) GROUP BY 1, 2 ORDER BY 4 DESC LIMIT 3",
    )
    print("  top countries by sales: " + ", ".join(f"{c} {n} sales {cur} {v:,.2f}" for c, cur, n, v in top))


UNITS_BY_COUNTRY_AND_MONTH = """
SELECT c.counterparty_legal_country AS country, to_char(o.created_date, 'YYYY-MM') AS month,
       sum(o.units_sold) AS units_sold, count(*) AS orders
FROM (SELECT DISTINCT ON (sales_order_id) *          -- the current version of each order
      FROM fact_sales_order ORDER BY sales_order_id, last_updated_date DESC, last_updated_time DESC) AS o
JOIN dim_counterparty AS c USING (counterparty_id)
GROUP BY 1, 2 ORDER BY 1, 2
"""


def _star_fingerprint(conn) -> dict[str, str]:
    """A digest of every star table's rows (to show a rerun changes nothing)."""
    from conveyor.totesys import star

    return {
        table: conn.execute(
            f"SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) FROM {table} AS t"
        ).fetchone()[0]
        for table in star.STAR
    }


def schema_drift(state: dict, sqs, info: dict) -> None:
    """What the delta run's check_drift did with the column sales_order gained: its line in the
    log, its message on the notifications topic, and the values that reached the warehouse."""
    import psycopg

    from conveyor.totesys import drift_notices

    with psycopg.connect(stack.postgres_dsn(state, "warehouse")) as conn:
        logged = conn.execute(
            "SELECT window_name, action, detail FROM staging.schema_changes ORDER BY change_id"
        ).fetchall()
        landed = conn.execute("SELECT count(*) FROM staging.sales_order WHERE channel = 'web'").fetchone()[0]
    sent = [
        m["Subject"]
        for m in _notifications(sqs, info, "totesys_etl")
        if m["MessageAttributes"].get("status", {}).get("Value") == drift_notices.STATUS
    ]
    if len(logged) != 1 or len(sent) != 1 or landed != 3:
        raise SystemExit(f"schema drift: logged {logged}, sent {sent}, {landed} orders with a channel")
    [(window, action, detail)] = logged
    print(f"• schema drift, carried by the delta run's check_drift ({landed} orders landed with a channel):")
    print(f"  staging.schema_changes [{window}] {action}: {detail}")
    print(f"  SNS notification: {sent[0]}")


def totesys_etl(info: dict, logical_date: str) -> None:
    import psycopg

    from conveyor.totesys import warehouse, windows
    from conveyor_local import totesys_data as totesys

    state = stack.load_state()
    first = logical_date
    second = (datetime.fromisoformat(first) + timedelta(minutes=3)).isoformat()
    at = datetime.fromisoformat(first).replace(tzinfo=None)
    with psycopg.connect(stack.postgres_dsn(state, "postgres"), autocommit=True) as admin:
        for database in ("totesys", "warehouse"):  # the demo owns these databases
            admin.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
            admin.execute(f"CREATE DATABASE {database}")
    with psycopg.connect(stack.postgres_dsn(state, "totesys")) as conn:
        totesys.create_schema(conn)
        counts = totesys.populate(conn, scale=1, seed=1, at=at)
    print(f"• created ToteSys in Postgres: {sum(counts.values()):,} rows in {len(counts)} tables")
    s3, sqs = _clients(info)
    loaded: list[str] = []  # the windows' names, for processed_to_snowflake

    def rows_of(logical_date: str, seconds: float, label: str, full_snapshot: bool = False) -> dict[str, int]:
        # `airflow dags test` at D runs the interval ending at D (3 minutes): a manual run takes
        # exactly that interval, shifted back by the 60 s lag.
        end = datetime.fromisoformat(logical_date)
        window = windows.extract_window(end - timedelta(minutes=3), end, timedelta(seconds=60))
        window = dataclasses.replace(window, full_snapshot=full_snapshot)
        bucket = info["buckets"]["ingestion"]
        manifest = json.loads(s3.get_object(Bucket=bucket, Key=windows.manifest_key(window))["Body"].read())
        print(f"• {label} in {seconds:.1f}s, window {manifest['window'][0]} → {manifest['window'][1]}")
        if window.name not in loaded:
            loaded.append(window.name)
        return {t["table"]: t["rows"] for t in manifest["tables"]}

    initial = rows_of(
        first,
        run_dag("totesys_etl", first, conf='{"full_snapshot": true}'),
        "initial load (full snapshot)",
        full_snapshot=True,
    )
    with psycopg.connect(stack.postgres_dsn(state, "totesys")) as conn:
        changed = totesys.simulate(conn, seed=2, at=at - timedelta(seconds=60), span=timedelta(minutes=3))
        # Schema drift: sales_order gains a column between the runs. Three existing orders change
        # too (each gets a second row in fact_sales_order), and they carry a value in it.
        conn.execute("ALTER TABLE sales_order ADD COLUMN channel varchar(20)")
        conn.execute(
            "UPDATE sales_order SET units_sold = units_sold + 1, channel = 'web', last_updated = %s "
            "WHERE sales_order_id <= 3",
            (at + timedelta(seconds=30),),
        )
        conn.commit()
    print(f"• simulate: {sum(changed.values()) + 3} new or updated rows (3 of them existing sales orders)")
    print("  and a new column, sales_order.channel (set to 'web' on those 3 orders)")
    _notifications(sqs, info, "totesys_etl")
    delta = rows_of(second, run_dag("totesys_etl", second), "delta run")
    print(f"  {'table':<16} {'initial':>8} {'delta':>6}")
    for table in sorted(initial):
        print(f"  {table:<16} {initial[table]:>8} {delta.get(table, 0):>6}")
    print(f"  files and manifests in s3://{info['buckets']['ingestion']}/")
    schema_drift(state, sqs, info)

    with psycopg.connect(stack.postgres_dsn(state, "warehouse")) as conn:
        counts = warehouse.star_counts(conn)
        print("• the warehouse (database `warehouse`), landed, modelled and checked by the same runs:")
        for table, rows in counts.items():
            print(f"  {table:<20} {rows:>6} rows")
        with psycopg.connect(stack.postgres_dsn(state, "totesys")) as source:
            expected = source.execute(
                "SELECT sales_order_id, last_updated FROM sales_order ORDER BY 1"
            ).fetchall()
        current = conn.execute(
            "SELECT sales_order_id, last_updated FROM staging.sales_order ORDER BY 1"
        ).fetchall()
        versions = conn.execute(
            "SELECT count(*) FROM fact_sales_order GROUP BY sales_order_id HAVING count(*) > 1"
        ).fetchall()
        print(
            f"  current version of every ToteSys sales order: {'yes' if current == expected else 'NO'} "
            f"({len(current)} orders; {len(versions)} with two versions in fact_sales_order)"
        )
        if current != expected:
            raise SystemExit("the warehouse does not hold the current version of every sales order")
        print("• units sold by counterparty country and month (current version of each order):")
        print(f"  {'country':<8} {'month':<8} {'units':>8} {'orders':>6}")
        for country, month, units, orders in conn.execute(UNITS_BY_COUNTRY_AND_MONTH):
            print(f"  {country:<8} {month:<8} {units:>8,} {orders:>6}")
        before = _star_fingerprint(conn)
    seconds = run_dag("totesys_etl", second)
    with psycopg.connect(stack.postgres_dsn(state, "warehouse")) as conn:
        unchanged = _star_fingerprint(conn) == before
    print(f"• reran the delta window in {seconds:.1f}s: warehouse {'unchanged' if unchanged else 'CHANGED'}")
    if not unchanged:
        raise SystemExit("rerunning a window changed the warehouse")
    processed = s3.list_objects_v2(Bucket=info["buckets"]["processed"]).get("KeyCount", 0)
    print(
        f"  star rows of each window exported as Parquet: {processed} files in s3://{info['buckets']['processed']}/"
    )

    # The `processed` asset schedules processed_to_snowflake; `dags test` runs it per window here.
    seconds = sum(
        run_dag("processed_to_snowflake", second, conf=json.dumps({"window": name})) for name in loaded
    )
    print(
        f"• ran processed_to_snowflake for {len(loaded)} windows in {seconds:.1f}s: COPY INTO staging, "
        "MERGE into the star in Snowflake"
    )
    with psycopg.connect(stack.postgres_dsn(state, "warehouse")) as conn:
        postgres = warehouse.star_counts(conn)
    print(f"  {'star table':<22} {'Postgres':>9} {'Snowflake (fake)':>17}")
    for table, rows in postgres.items():
        [(in_snowflake,)] = snowflake_query(info, f"SELECT count(*) FROM CONVEYOR.TOTESYS.{table.upper()}")
        print(f"  {table:<22} {rows:>9,} {in_snowflake:>17,}")
        if in_snowflake != rows:
            raise SystemExit(f"{table}: {in_snowflake} rows in Snowflake, {rows} in the Postgres warehouse")


SECTIONS = (
    (
        "1. nightly_file_ingestion: source bucket -> raw bucket, dated keys, SNS summary",
        nightly_file_ingestion,
    ),
    (
        "2. s3_event_copy: raw bucket events -> SNS -> SQS -> copy raw -> curated -> Snowflake (flattened)",
        s3_event_copy,
    ),
    ("3. retail_data_generator -> inbound -> inbound_to_stage -> stage + dated archive -> Snowflake", retail),
    (
        "4. totesys_etl: ToteSys Postgres -> changed rows (Parquet, ingestion bucket) -> warehouse star schema"
        " -> Snowflake",
        totesys_etl,
    ),
)
# The sections each Airflow process runs, in order: 4 (five runs, three of them totesys_etl) in one,
# the other three (six shorter runs) in the other.
LANES = ((3,), (0, 1, 2))


class _Sections(io.TextIOBase):
    """sys.stdout while the lanes run: what a section prints is kept until every section before it
    is printed, then goes out in the order of SECTIONS."""

    def __init__(self, out):
        self.out = out
        self.texts = [io.StringIO() for _ in SECTIONS]
        self.done = [False] * len(SECTIONS)
        self.printed = 0
        self.lock = threading.Lock()
        self.current = threading.local()

    def write(self, text: str) -> int:
        index = getattr(self.current, "index", None)
        if index is None:
            return self.out.write(text)
        with self.lock:
            return self.texts[index].write(text)

    def flush(self) -> None:
        self.out.flush()

    def finished(self, index: int) -> None:
        with self.lock:
            self.done[index] = True
            while self.printed < len(SECTIONS) and self.done[self.printed]:
                self.out.write(self.texts[self.printed].getvalue())
                self.out.flush()
                self.printed += 1

    def rest(self) -> None:
        """After a failure: what the unfinished sections printed so far."""
        for index in range(len(SECTIONS)):
            self.finished(index)


def _run_lane(
    sections: tuple[int, ...], info: dict, logical_date: str, output: _Sections, errors: list
) -> None:
    _lane.runner = _Runner()
    try:
        for index in sections:
            title, section = SECTIONS[index]
            output.current.index = index
            print(("\n" if index else "") + title)
            section(info, logical_date)
            output.finished(index)
    except BaseException as error:  # SystemExit from a section: the failure, said once, after the output
        errors.append(error)
    finally:
        output.current.index = None
        _lane.runner.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conveyor_local.demo", description=__doc__)
    parser.add_argument(
        "--date",
        default=recent_date(),
        help="logical date of the runs (default: yesterday 20:00 UTC, %(default)s)",
    )
    parser.add_argument(
        "--serve", action="store_true", help=argparse.SUPPRESS
    )  # an Airflow process of the demo
    args = parser.parse_args(argv)
    if args.serve:
        return serve()
    started = time.monotonic()
    info = stack.describe()
    print(f"Conveyor demo on the local stack ({info['endpoint_url']}, Airflow home {info['airflow_home']})\n")
    output = _Sections(sys.stdout)
    errors: list[BaseException] = []
    lanes = [
        threading.Thread(target=_run_lane, args=(lane, info, args.date, output, errors), name=f"lane-{n}")
        for n, lane in enumerate(LANES)
    ]
    sys.stdout = output
    try:
        for lane in lanes:
            lane.start()
        for lane in lanes:
            lane.join()
    finally:
        sys.stdout = output.out
        if errors:
            output.rest()
    if errors:
        raise errors[0]
    print(
        f"\nDemo finished in {time.monotonic() - started:.0f}s. Explore: `make airflow` (UI), "
        "`source .local/env.sh`, `python -m conveyor_local describe`."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
