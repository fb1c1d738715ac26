"""Copy what S3 events name from raw to curated and settle each SQS message exactly once in effect.

One run takes a bounded batch (by message count and by the bytes the events name); messages
beyond it are released at once for the next run. Before any copy, the batch's visibility is
extended to the queue's full visibility timeout from now, so no message can reappear (and be
copied twice) while its copy runs; a message whose visibility can no longer be changed (already
deleted, or its receipt handle is stale) is left alone. Copies stop being started at the run's
deadline (their messages are released for the next run) and are cancelled if the task is
interrupted (execution_timeout).

A message is deleted only when every object it names was copied; otherwise it stays, comes back
after the visibility timeout, and after `maxReceiveCount` receives the redrive policy moves it to
the dead-letter queue. Poison bodies are written to `_quarantine/` in the curated bucket (outside
the `events/` prefix, so no notification reaches Snowpipe) and deleted. A delete SQS refuses is
reported as a failure. Copies are keyed by the object key, so duplicates and reordering are harmless.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import date

from conveyor import sqs
from conveyor.events.parsing import ParsedMessage, parse_messages
from conveyor.keys import day_partition
from conveyor.s3 import DEADLINE_PASSED, CopyRequest, S3Object, copy_objects, s3_error_code

QUARANTINE_PREFIX = "_quarantine"
GiB = 1024**3


@dataclass(frozen=True)
class Budget:
    """What one run may take on: messages, bytes named by their events, and seconds of copying."""

    messages: int = 500
    bytes: int = 20 * GiB
    seconds: float = 480.0


def select_batch(parsed: list[ParsedMessage], budget: Budget) -> tuple[list, list]:
    """(taken, released): messages in arrival order while both limits hold; always at least one."""
    taken: list[ParsedMessage] = []
    total = 0
    for index, message in enumerate(parsed):
        if taken and (len(taken) >= budget.messages or total + message.size > budget.bytes):
            return taken, parsed[index:]
        taken.append(message)
        total += message.size
    return taken, []


def quarantine_key(message_id: str, day: date) -> str:
    return f"{QUARANTINE_PREFIX}/{day_partition(day)}/{message_id}.json"


def quarantine(s3, bucket: str, message: ParsedMessage, day: date) -> str:
    """Write the poison message's body and reason to the quarantine prefix; returns the key."""
    key = quarantine_key(message.message_id, day)
    document = {"message_id": message.message_id, "reason": message.poison, "body": message.body}
    s3.put_object(
        Bucket=bucket,
        Key=key,
        Body=json.dumps(document, ensure_ascii=False, indent=2).encode(),
        ContentType="application/json",
    )
    return key


def copy_and_settle(
    s3,
    sqs_client,
    queue_url: str,
    messages: list[dict],
    target_bucket: str,
    day: date,
    *,
    budget: Budget = Budget(),
    hold_seconds: int,
    **copy_options,
) -> dict:
    """Copy every object the batch names to `target_bucket` (same key), then delete exactly the
    messages that are done: all their copies succeeded, a test event, or quarantined poison.

    `hold_seconds`: how long the batch stays invisible from now (the queue's visibility timeout).
    """
    started = time.monotonic()
    parsed = parse_messages(list({m["MessageId"]: m for m in messages}.values()))  # each message once
    batch, beyond = select_batch(parsed, budget)
    release_failures = sqs.set_visibility(sqs_client, queue_url, [m.handle for m in beyond], 0)
    hold_failures = sqs.set_visibility(sqs_client, queue_url, [m.handle for m in batch], hold_seconds)
    lost = {f.message_id: f for f in hold_failures}
    batch = [m for m in batch if m.message_id not in lost]

    unique = {(o.bucket, o.key): o for m in batch for o in m.objects}  # duplicates copy once
    results = copy_objects(
        s3,
        [CopyRequest(S3Object(o.bucket, o.key, o.size), target_bucket, o.key) for o in unique.values()],
        deadline=started + budget.seconds,
        **copy_options,
    )
    source = lambda r: (r.request.source.bucket, r.request.source.key)  # noqa: E731
    not_started = {source(r) for r in results if r.error == DEADLINE_PASSED}
    failed = {source(r): r.error for r in results if not r.ok and r.error != DEADLINE_PASSED}

    done, kept, later, quarantined = [], [], [], []
    for message in batch:
        keys = {(o.bucket, o.key) for o in message.objects}
        if message.poison:
            quarantined.append(quarantine(s3, target_bucket, message, day))
            done.append(message)
        elif keys & failed.keys():
            kept.append(message)  # redelivered after the visibility timeout; DLQ after 5 receives
        elif keys & not_started:
            later.append(message)  # out of time, not failed: straight back for the next run
        else:
            done.append(message)
    release_failures += sqs.set_visibility(sqs_client, queue_url, [m.handle for m in later], 0)
    delete_failures = sqs.delete_messages(sqs_client, queue_url, [m.handle for m in done])
    return {
        "messages": len(parsed),
        "batch": len(batch) + len(lost),
        "released": len(beyond) + len(later),
        "deleted": len(done) - len(delete_failures),
        "kept": [m.message_id for m in kept],
        "test_events": sum(m.test_event for m in batch),
        "quarantined": quarantined,
        "copied": len(results) - len(failed) - len(not_started),
        "bytes": sum(r.size for r in results if r.ok),
        "failed": [{"bucket": b, "key": k, "error": e} for (b, k), e in sorted(failed.items())],
        # Not held: deleted or received elsewhere since; left to whoever holds it now.
        "not_held": [str(f) for f in hold_failures],
        "not_released": [str(f) for f in release_failures],
        "not_deleted": [str(f) for f in delete_failures],
    }


def problems(summary: dict) -> list[str]:
    """Why a settled batch should fail the task (empty: it should not)."""
    found = []
    if summary["failed"]:
        shown = "; ".join(f"{f['key']}: {f['error']}" for f in summary["failed"][:5])
        found.append(
            f"{len(summary['failed'])} object(s) failed to copy; their {len(summary['kept'])} message(s) "
            f"stay on the queue and will be delivered again: {shown}"
        )
    if summary["not_deleted"]:
        found.append(
            f"{len(summary['not_deleted'])} message(s) were processed but SQS did not delete them (they will "
            f"be delivered and copied again, to the same keys): {'; '.join(summary['not_deleted'][:5])}"
        )
    return found


def copy_keys(
    s3, source_bucket: str, keys: list[str], target_bucket: str, *, prefix: str = "", **copy_options
) -> dict:
    """Copy the named keys (same key) for a manual replay; raises naming every key that failed.

    Keys outside `prefix` are refused: only that prefix of the target is read downstream.
    """
    sources, missing = [], []
    for key in dict.fromkeys(keys):  # each key once, in the order given
        if not key.startswith(prefix):
            missing.append(f"{key}: not under {prefix} (only {prefix} is copied and loaded downstream)")
            continue
        try:
            head = s3.head_object(Bucket=source_bucket, Key=key)
        except s3.exceptions.ClientError as exc:
            missing.append(f"{key}: {s3_error_code(exc)}")
            continue
        sources.append(S3Object(source_bucket, key, head["ContentLength"]))
    results = copy_objects(s3, [CopyRequest(o, target_bucket, o.key) for o in sources], **copy_options)
    failed = missing + [f"{r.request.source.key}: {r.error}" for r in results if not r.ok]
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(keys)} replay key(s) not copied: {'; '.join(failed[:10])}")
    return {"copied": len(results), "bytes": sum(r.size for r in results), "keys": [o.key for o in sources]}
