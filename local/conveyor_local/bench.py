"""`make bench`: each figure is a ratio against a baseline measured in the same run.

    python -m conveyor_local.bench [--objects 2000] [--events 20000] [--rounds 2]

1. The copy engine vs a plain boto3 thread pool of `copy_object` calls of the same width, copying
   the same small objects on the same moto server (best of `rounds` each, interleaved).
2. S3 events parsed per second by `conveyor.events.parsing.parse_messages` vs the bare minimum of work
   (two `json.loads` per SNS-wrapped message).
3. The ToteSys extract of 1,000,000 rows to Parquet in a (moto) bucket vs `COPY (SELECT ...) TO
   STDOUT` into a local file (the limit), beside two options measured and not taken
   (docs/totesys.md): Parquet encoding + upload on a thread of their own, and ADBC's Postgres
   driver (if installed), best of `--extract-rounds`; and vs `pandas.read_sql` + `to_csv`;
   the extract's peak RSS at 2,000,000 rows (in a child process, beside an idle child's); and a
   1,000-row delta from the 2,000,000-row table as a fraction of the full extract's time.
4. A ToteSys window into the warehouse (conveyor_local.bench_warehouse): landing vs COPY from a
   local CSV file, land + model vs the same limit and vs pandas.to_sql, peak RSS, and a small
   window after a full load.
4b. The model of a 1,000-row window over 100,000 and 10,000,000 landed history rows
   (`--history SMALL BIG`), generated straight into the landing tables, and their ratio (goal
   <= 1.2x); alone: `python -m conveyor_local.bench --only history` (about 4 minutes).
5. s3_event_copy under the real scheduler (conveyor_local.event_latency): put_object in raw ->
   copy in curated, p50 and p95 over 20 objects, beside the old Lambda copier's documented latency.
6. One curated_to_snowflake run on the fake Snowflake (conveyor_local.bench_snowflake): the
   statements it sends and the files and rows they read, at 10 and at 1,000 earlier files.
7. Freshness under the real scheduler (conveyor_local.freshness): a ToteSys row changed -> its
   fact row in the warehouse, p50/p95 over 20 changes spread over one schedule interval, in
   schedule intervals (goal p95 < 2); a raw object -> its row in Snowflake's EVENTS.ORDERS.
   Alone: `python -m conveyor_local.bench --only freshness` (about 10 minutes).
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pyarrow.parquet as pq
from botocore.config import Config

from conveyor.events.parsing import parse_messages
from conveyor.s3 import DEFAULT_MAX_CONCURRENCY, CopyRequest, copy_objects, list_objects
from conveyor_local.stack import free_port

REGION = "eu-west-2"


def _wait_for(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"moto server did not start on port {port}")


def _timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def bench_copies(objects: int, rounds: int, width: int) -> dict:
    # moto in its own process: sharing this process's GIL would let client overhead slow the server.
    server, endpoint = _start_moto()
    try:
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name=REGION,
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
            config=Config(max_pool_connections=width),
        )
        for bucket in ("bench-source", "bench-target"):
            s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
        with ThreadPoolExecutor(width) as pool:
            list(
                pool.map(
                    lambda i: s3.put_object(Bucket="bench-source", Key=f"obj/{i:05d}.json", Body=b"{}" * 64),
                    range(objects),
                )
            )
        sources = list(list_objects(s3, "bench-source", "obj/"))

        def baseline(prefix):
            def copy_one(obj):
                s3.copy_object(
                    CopySource={"Bucket": obj.bucket, "Key": obj.key},
                    Bucket="bench-target",
                    Key=prefix + obj.key,
                )

            with ThreadPoolExecutor(width) as pool:
                list(pool.map(copy_one, sources))

        def engine(prefix):
            results = copy_objects(
                s3, [CopyRequest(o, "bench-target", prefix + o.key) for o in sources], max_concurrency=width
            )
            assert all(r.ok for r in results), [r.error for r in results if not r.ok][:3]

        base_times, engine_times = [], []
        for round_ in range(rounds):
            base_times.append(_timed(lambda r=round_: baseline(f"base{r}/")))
            engine_times.append(_timed(lambda r=round_: engine(f"engine{r}/")))
        copied = sum(1 for _ in list_objects(s3, "bench-target", ""))
        assert copied == 2 * rounds * objects, f"expected {2 * rounds * objects} copies, found {copied}"
        return {"baseline_s": min(base_times), "engine_s": min(engine_times)}
    finally:
        server.terminate()
        server.wait()


def bench_parsing(count: int) -> dict:
    bodies = []
    for i in range(count):
        inner = {
            "Records": [
                {
                    "eventSource": "aws:s3",
                    "eventName": "ObjectCreated:Put",
                    "s3": {
                        "bucket": {"name": "conveyor-local-raw"},
                        "object": {"key": f"dir%2Ffile+{i}+%C3%BC.json", "size": 10, "eTag": "abc"},
                    },
                }
            ]
        }
        bodies.append(json.dumps({"Type": "Notification", "Message": json.dumps(inner)}))
    messages = [{"MessageId": str(i), "ReceiptHandle": str(i), "Body": b} for i, b in enumerate(bodies)]

    def minimum():
        for body in bodies:
            json.loads(json.loads(body)["Message"])

    parsed: list = []
    base = min(_timed(minimum) for _ in range(3))
    ours = min(_timed(lambda: parsed.append(parse_messages(messages))) for _ in range(3))
    assert all(len(p.objects) == 1 for p in parsed[0])
    return {"baseline_s": base, "engine_s": ours, "per_second": count / ours}


ORDERS_DDL = """
CREATE TABLE bench_order (
    bench_order_id  bigint PRIMARY KEY,
    design_id       integer NOT NULL,
    counterparty    text NOT NULL,
    units_sold      integer NOT NULL,
    unit_price      numeric(10, 2) NOT NULL,
    delivery_date   date NOT NULL,
    created_at      timestamp NOT NULL,
    last_updated    timestamp NOT NULL
);
INSERT INTO bench_order
SELECT i, i % 500, 'Counterparty ' || (i % 997) || ' Zoë Ltd', (i * 7) % 100000, ((i * 13) % 40000) / 100.0,
       DATE '2024-01-01' + (i % 365), TIMESTAMP '2024-01-01' + i * INTERVAL '1 millisecond',
       TIMESTAMP '2024-01-01' + i * INTERVAL '1 millisecond'
FROM generate_series(1, %(rows)s) AS i;
CREATE INDEX bench_order_last_updated ON bench_order (last_updated);
ANALYZE bench_order;
"""
BENCH_START = datetime(2024, 1, 1, tzinfo=UTC)


def _start_moto() -> tuple[subprocess.Popen, str]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait_for(port)
    return server, f"http://127.0.0.1:{port}"


@contextmanager
def bench_services():
    """A scratch directory, an embedded Postgres and a moto server with the `bench` bucket, all
    gone afterwards. Yields (directory, Postgres admin DSN, moto endpoint, S3 client)."""
    import logging
    import tempfile

    import pgserver

    logging.getLogger("pgserver").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="conveyor-bench-") as tmp:
        server = pgserver.get_server(Path(tmp) / "pg", cleanup_mode="stop")
        moto, endpoint = _start_moto()
        try:
            s3 = _s3(endpoint)
            s3.create_bucket(Bucket="bench", CreateBucketConfiguration={"LocationConstraint": REGION})
            yield Path(tmp), server.get_uri("postgres"), endpoint, s3
        finally:
            moto.terminate()
            moto.wait()
            server.cleanup()


def _s3(endpoint: str):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
    )


def _extract(dsn: str, endpoint: str, window, full: bool = False) -> dict:
    import psycopg

    from conveyor.totesys import extract, tables, windows

    spec = tables.TableSpec("bench_order", "bench_order_id", "last_updated")
    with psycopg.connect(dsn) as conn:
        return extract.extract_table(
            conn,
            _s3(endpoint),
            "bench",
            spec,
            tables.catalog_columns(conn, spec),
            windows.Window(*window, full_snapshot=full),
        )


def _child_peak_rss(args: list[str]) -> int:
    """Peak RSS (bytes) of `python -m conveyor_local.bench <args>` run in a child process."""
    out = subprocess.run(
        [sys.executable, "-m", "conveyor_local.bench", *args], check=True, capture_output=True, text=True
    )
    return int(out.stdout.strip().splitlines()[-1])


_PARQUET_WRITER = pq.ParquetWriter  # the real one (the pipeline option patches pyarrow's name)


class _ThreadedParquetWriter:
    """A pyarrow ParquetWriter whose row groups are encoded and uploaded on a thread of their own
    (a queue of one), beside decoding: the pipeline option, measured and not taken."""

    def __init__(self, sink, schema, **kwargs):
        import queue
        import threading

        self._writer = _PARQUET_WRITER(sink, schema, **kwargs)
        self._queue, self._error = queue.Queue(maxsize=1), None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (table := self._queue.get()) is not None:
            if self._error is None:
                try:
                    self._writer.write_table(table)
                except BaseException as exc:
                    self._error = exc

    def write_table(self, table) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(table)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._error is not None:
            raise self._error
        self._writer.close()


def _extract_pipelined(dsn: str, endpoint: str, window) -> dict:
    from unittest import mock

    from conveyor.totesys import extract

    with mock.patch.object(extract.pq, "ParquetWriter", _ThreadedParquetWriter):
        return _extract(dsn, endpoint, window)


def _adbc_available() -> bool:
    try:
        import adbc_driver_postgresql.dbapi  # noqa: F401
    except ImportError:
        return False
    return True


def _extract_adbc(dsn: str, endpoint: str, window, *, pipelined: bool) -> int:
    """The option not taken: ADBC's Postgres driver (COPY binary -> Arrow in C++) on a connection
    of its own, cast to the extract's schema, into the same Parquet writer and S3 upload."""
    import adbc_driver_postgresql.dbapi as adbc
    import psycopg
    import pyarrow as pa
    import pyarrow.parquet as pq

    from conveyor.s3 import S3MultipartWriter
    from conveyor.totesys import extract, tables, windows

    spec = tables.TableSpec("bench_order", "bench_order_id", "last_updated")
    with psycopg.connect(dsn) as conn:
        columns = tables.catalog_columns(conn, spec)
        query = extract.select_statement(spec, columns, windows.Window(*window)).as_string(conn)
    schema = extract.arrow_schema(columns)
    sink = S3MultipartWriter(_s3(endpoint), "bench", "adbc.parquet")
    writer = (_ThreadedParquetWriter if pipelined else pq.ParquetWriter)(sink, schema, compression="zstd")
    rows, pending, pending_bytes = 0, [], 0
    with adbc.connect(dsn) as conn, conn.cursor() as cur:
        # Batches of ~4 MiB (its default, larger, took 289 MiB peak at 2M rows; this, 239 MiB).
        cur.adbc_statement.set_options(**{"adbc.postgresql.batch_size_hint_bytes": str(4 * 1024 * 1024)})
        cur.execute(query)
        for batch in cur.fetch_record_batch():
            batch = batch.cast(schema)  # numeric arrives as text (an opaque extension type)
            pending.append(batch)
            pending_bytes += batch.nbytes
            rows += batch.num_rows
            if pending_bytes >= extract.ROW_GROUP_BYTES:
                writer.write_table(pa.Table.from_batches(pending))
                pending, pending_bytes = [], 0
    if pending:
        writer.write_table(pa.Table.from_batches(pending))
    writer.close()
    sink.close()
    return rows


def bench_extract(rows: int, big: int, delta: int, rounds: int = 3) -> dict:
    import pandas as pd
    import psycopg
    import sqlalchemy

    with bench_services() as (tmp, dsn, endpoint, _):
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(ORDERS_DDL.replace("%(rows)s", str(big)))
        # 1,000,000 rows: the window over the first `rows` cursor values.
        window = (BENCH_START, BENCH_START + timedelta(milliseconds=rows + 1))
        check = _extract(dsn, endpoint, window)
        assert check["rows"] == rows, check

        query = (
            "SELECT * FROM bench_order WHERE last_updated >= '2024-01-01' "
            f"AND last_updated < '{window[1].replace(tzinfo=None).isoformat(sep=' ')}' ORDER BY last_updated, bench_order_id"
        )

        def copy_limit():
            with (
                psycopg.connect(dsn) as conn,
                open(tmp / "copy.csv", "wb") as out,
                conn.cursor().copy(f"COPY ({query}) TO STDOUT WITH (FORMAT csv)") as copy,
            ):
                for chunk in copy:
                    out.write(chunk)

        # The options side by side, interleaved round by round (the machine is shared): best of each.
        options = {
            "limit": copy_limit,
            "ours": lambda: _extract(dsn, endpoint, window),
            "pipelined": lambda: _extract_pipelined(dsn, endpoint, window),
        }
        if _adbc_available():
            options["adbc"] = lambda: _extract_adbc(dsn, endpoint, window, pipelined=False)
            options["adbc_pipelined"] = lambda: _extract_adbc(dsn, endpoint, window, pipelined=True)
        best = dict.fromkeys(options, float("inf"))
        for _ in range(rounds):
            for name, fn in options.items():
                best[name] = min(best[name], _timed(fn))
        limit, ours = best["limit"], best["ours"]

        def old_way():
            engine = sqlalchemy.create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(dsn))
            with engine.connect() as conn:
                pd.read_sql(sqlalchemy.text(query), conn).to_csv(tmp / "pandas.csv", index=False)
            engine.dispose()

        pandas_s = _timed(old_way)

        # Peak RSS of a whole 2,000,000-row extract, beside an idle child with the same imports.
        probe = ["--rss-probe", dsn, endpoint]
        rss_extract = _child_peak_rss(probe)
        rss_quarter = _child_peak_rss([*probe, "--probe-rows", str(big // 4)])
        rss_idle = _child_peak_rss([*probe, "--idle"])

        # A 1,000-row delta in the 2,000,000-row table vs the full extract.
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                "UPDATE bench_order SET last_updated = TIMESTAMP '2024-06-01' + bench_order_id * INTERVAL '1 microsecond' "
                f"WHERE bench_order_id % {big // delta} = 0"
            )
        delta_window = (datetime(2024, 6, 1, tzinfo=UTC), datetime(2024, 6, 1, 0, 1, tzinfo=UTC))
        delta_s = min(_timed(lambda: _extract(dsn, endpoint, delta_window)) for _ in range(3))
        assert _extract(dsn, endpoint, delta_window)["rows"] == delta
        full_s = _timed(lambda: _extract(dsn, endpoint, delta_window, full=True))
    return {
        "ours": ours,
        "limit": limit,
        "pipelined": best["pipelined"],
        "adbc": best.get("adbc"),
        "adbc_pipelined": best.get("adbc_pipelined"),
        "pandas": pandas_s,
        "rss_extract": rss_extract,
        "rss_idle": rss_idle,
        "rss_quarter": rss_quarter,
        "delta": delta_s,
        "full": full_s,
    }


def rss_probe(dsn: str, endpoint: str, idle: bool, rows: int | None) -> int:
    from conveyor.totesys import extract  # noqa: F401  (same imports as the extract, for the idle figure)

    if not idle:
        if rows:  # the first `rows` cursor values (one per millisecond)
            result = _extract(dsn, endpoint, (BENCH_START, BENCH_START + timedelta(milliseconds=rows + 1)))
            assert result["rows"] == rows, result
        else:
            result = _extract(dsn, endpoint, (BENCH_START, BENCH_START + timedelta(days=1)), full=True)
        assert result["rows"] > 0
    # VmHWM: this address space's peak. (ru_maxrss would carry over the forking parent's peak.)
    status = Path("/proc/self/status").read_text()
    peak_kib = int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1])
    print(peak_kib * 1024)
    return 0


SECTIONS = ["copies", "parsing", "extract", "warehouse", "history", "latency", "snowflake", "freshness"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conveyor_local.bench", description=__doc__)
    parser.add_argument("--objects", type=int, default=2_000)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--width", type=int, default=DEFAULT_MAX_CONCURRENCY)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in the extract comparison")
    parser.add_argument("--big", type=int, default=2_000_000, help="table size for the RSS and delta figures")
    parser.add_argument(
        "--extract-rounds", type=int, default=3, help="rounds of the extract options (best of each)"
    )
    parser.add_argument("--small", type=int, default=1_000, help="rows of the small warehouse window")
    parser.add_argument(
        "--pandas-rows", type=int, default=200_000, help="rows pandas.to_sql loads (its rate is compared)"
    )
    parser.add_argument(
        "--only",
        choices=SECTIONS,
        action="append",
    )
    parser.add_argument(
        "--history",
        type=int,
        nargs=2,
        default=[100_000, 10_000_000],
        metavar=("SMALL", "BIG"),
        help="landed history rows the 1,000-row window is modelled over",
    )
    parser.add_argument(
        "--freshness-cron",
        default="*/3 * * * *",
        help="totesys_etl's schedule in the freshness bench (deployed: */3)",
    )
    parser.add_argument(
        "--freshness-changes", type=int, default=20, help="ToteSys changes the freshness bench times"
    )
    parser.add_argument("--rss-probe", nargs=2, metavar=("DSN", "ENDPOINT"), help=argparse.SUPPRESS)
    parser.add_argument("--idle", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--probe-rows", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--warehouse-rss-probe", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rss_probe:
        return rss_probe(*args.rss_probe, idle=args.idle, rows=args.probe_rows)
    if args.warehouse_rss_probe:
        from conveyor_local import bench_warehouse

        dsn, endpoint, key, rows = args.warehouse_rss_probe
        return bench_warehouse.rss_probe(dsn, endpoint, key, int(rows))
    only = set(args.only or SECTIONS)
    if "copies" in only:
        bench_copies_report(args)
    if "parsing" in only:
        bench_parsing_report(args)
    if "extract" in only:
        bench_extract_report(args)
    if "warehouse" in only:
        from conveyor_local import bench_warehouse

        bench_warehouse.report(args)
    if "history" in only:
        from conveyor_local import bench_warehouse

        bench_warehouse.report_history(args)
    if "latency" in only:
        from conveyor_local import event_latency

        event_latency.report()
    if "snowflake" in only:
        from conveyor_local import bench_snowflake

        bench_snowflake.report(args)
    if "freshness" in only:
        from conveyor_local import freshness

        freshness.report(cron=args.freshness_cron, changes=args.freshness_changes)
    return 0


def bench_copies_report(args) -> None:

    print(
        f"1. copy {args.objects:,} small objects on one moto server, {args.width} wide (best of {args.rounds})"
    )
    copies = bench_copies(args.objects, args.rounds, args.width)
    print(
        f"   baseline: thread pool of copy_object  {copies['baseline_s']:7.2f}s  {args.objects / copies['baseline_s']:8.0f} objects/s"
    )
    print(
        f"   conveyor copy engine                  {copies['engine_s']:7.2f}s  {args.objects / copies['engine_s']:8.0f} objects/s"
    )
    print(f"   ratio (baseline time / engine time):  {copies['baseline_s'] / copies['engine_s']:.2f}x")


def bench_parsing_report(args) -> None:
    print(f"2. parse {args.events:,} SNS-wrapped S3 events (best of 3)")
    parsing = bench_parsing(args.events)
    print(
        f"   baseline: json.loads x2 only          {parsing['baseline_s']:7.3f}s  {args.events / parsing['baseline_s']:10,.0f} events/s"
    )
    print(
        f"   conveyor parse_messages               {parsing['engine_s']:7.3f}s  {parsing['per_second']:10,.0f} events/s"
    )
    print(f"   ratio (engine speed / baseline):      {parsing['baseline_s'] / parsing['engine_s']:.2f}x")


def bench_extract_report(args) -> None:
    print(f"3. ToteSys-style extract: {args.rows:,} rows of a {args.big:,}-row Postgres table")
    r = bench_extract(args.rows, args.big, delta=1_000, rounds=args.extract_rounds)
    mib = 1024 * 1024
    print(f"   (best of {args.extract_rounds}, options interleaved)")
    print(
        f"   limit: COPY TO STDOUT -> local file    {r['limit']:7.2f}s  {args.rows / r['limit']:10,.0f} rows/s"
    )
    print(
        f"   conveyor extract -> Parquet in S3     {r['ours']:7.2f}s  {args.rows / r['ours']:10,.0f} rows/s"
    )
    print(
        f"   not taken: encode + upload on a thread {r['pipelined']:6.2f}s  {args.rows / r['pipelined']:10,.0f} rows/s"
        f"  ({r['limit'] / r['pipelined']:.2f}x of the limit's speed)"
    )
    if r["adbc"] is None:
        print("   ADBC Postgres driver: not installed (pip install adbc-driver-postgresql==1.12.0)")
    else:
        for name, label in (("adbc", "in turn      "), ("adbc_pipelined", "pipelined    ")):
            print(
                f"   not taken: ADBC, {label}        {r[name]:7.2f}s  {args.rows / r[name]:10,.0f} rows/s"
                f"  ({r['limit'] / r[name]:.2f}x of the limit's speed)"
            )
    print(
        f"   old: pandas.read_sql + to_csv         {r['pandas']:7.2f}s  {args.rows / r['pandas']:10,.0f} rows/s"
    )
    print(
        f"   ratio extract / limit (time):         {r['ours'] / r['limit']:.2f}x "
        f"(speed {r['limit'] / r['ours']:.2f}x of the limit; goal >= 0.8x)"
    )
    print(f"   ratio pandas / extract (speed-up):    {r['pandas'] / r['ours']:.2f}x")
    print(
        f"   peak RSS, {args.big:,}-row extract:     {r['rss_extract'] / mib:7.0f} MiB "
        f"(idle child with the same imports: {r['rss_idle'] / mib:.0f} MiB; "
        f"+{(r['rss_extract'] - r['rss_idle']) / mib:.0f} MiB)"
    )
    print(
        f"   peak RSS, {args.big // 4:,}-row extract:       {r['rss_quarter'] / mib:7.0f} MiB "
        f"(+{(r['rss_quarter'] - r['rss_idle']) / mib:.0f} MiB)"
    )
    print(
        f"   ratio peak RSS {args.big:,} / {args.big // 4:,} rows:  {r['rss_extract'] / r['rss_quarter']:.2f}x "
        "(flat: memory bounded by block, row-group and part sizes, not rows)"
    )
    print(
        f"   1,000-row delta vs full {args.big:,}:  {r['delta']:.3f}s vs {r['full']:.2f}s = "
        f"{r['delta'] / r['full']:.4f} of the full extract's time"
    )


if __name__ == "__main__":
    sys.exit(main())
