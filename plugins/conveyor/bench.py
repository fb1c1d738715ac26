"""`make bench`: each figure is a ratio against a baseline measured in the same run.

    python -m conveyor.bench [--objects 2000] [--events 20000] [--rounds 2]

1. The copy engine vs a plain boto3 thread pool of `copy_object` calls of the same width, copying
   the same small objects on the same moto server (best of `rounds` each, interleaved).
2. S3 events parsed per second by `conveyor.events.parse_messages` vs the bare minimum of work
   (two `json.loads` per SNS-wrapped message).
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import boto3
from botocore.config import Config

from conveyor import events
from conveyor.copying import DEFAULT_MAX_CONCURRENCY, CopyRequest, copy_objects, list_objects
from conveyor.local.stack import free_port

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
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(port)
        s3 = boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{port}",
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
    ours = min(_timed(lambda: parsed.append(events.parse_messages(messages))) for _ in range(3))
    assert all(len(p.objects) == 1 for p in parsed[0])
    return {"baseline_s": base, "engine_s": ours, "per_second": count / ours}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m conveyor.bench", description=__doc__)
    parser.add_argument("--objects", type=int, default=2_000)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--width", type=int, default=DEFAULT_MAX_CONCURRENCY)
    args = parser.parse_args(argv)

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

    print(f"2. parse {args.events:,} SNS-wrapped S3 events (best of 3)")
    parsing = bench_parsing(args.events)
    print(
        f"   baseline: json.loads x2 only          {parsing['baseline_s']:7.3f}s  {args.events / parsing['baseline_s']:10,.0f} events/s"
    )
    print(
        f"   conveyor events.parse_messages        {parsing['engine_s']:7.3f}s  {parsing['per_second']:10,.0f} events/s"
    )
    print(f"   ratio (engine speed / baseline):      {parsing['baseline_s'] / parsing['engine_s']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
