"""Copy what S3 events name from raw to curated and settle each SQS message exactly once in effect.

A run works in waves of at most 10 messages: those the wait handed over, then one ReceiveMessage
at a time. A message is received only when this run will try it: receiving stops once the run's
budget (messages, the bytes their events name, seconds) is reached, and what was received is
tried, never released unread, so a backlog costs a message one receive per try, not one per run
it waited through. (Sizes are known only once received: when they vary, a run can end a little
past its byte budget; those messages are copied too.)

Every message is hidden for the queue's full visibility timeout before its copy starts (the
wait's messages by ChangeMessageVisibility when the run starts, the others by the receive
itself), so none can reappear, and be copied twice, while its copy runs. A message whose
visibility can no longer be changed (already deleted, or its receipt handle is stale) is left
alone. Copies not started by the budget's `copy_seconds` (only a wave that overran the run) are
released for the next run, and copies are cancelled if the task is interrupted
(execution_timeout): those are the only messages received and not tried.

Each object is copied at exactly the version its event names (conveyor.events.versions):
- copied, a test event, or superseded (a newer version was written since; its own event copies
  it): the message is deleted;
- poison (not an S3 event) or vanished (the version no longer exists): a record with the reason
  goes to `_quarantine/` in the curated bucket (outside `events/`, so no notification reaches
  Snowpipe), then the message is deleted;
- failed (AccessDenied, an archived object, ...): the message stays, comes back after the
  visibility timeout, and after `maxReceiveCount` receives the redrive policy moves it to the
  dead-letter queue. The run does not fail for it: the rest keeps flowing. On its last receive
  it is listed in `dead_letters`, for one alert naming its keys and errors.
A failed copy fails the run only when the queue has no redrive policy (the message would come
back until it expires). A delete SQS refuses is reported as a failure. Copies are keyed by the
object key, so duplicates are harmless and a late event never rolls a key back.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import date

from conveyor import sqs
from conveyor.events.parsing import ObjectCreated, ParsedMessage, parse_messages
from conveyor.events.versions import VANISHED_CODES, Outcome, plan_copies
from conveyor.keys import day_partition
from conveyor.resources import COPY_EVENTS_TIMEOUT_S
from conveyor.s3 import (
    DEADLINE_PASSED,
    DEFAULT_MAX_CONCURRENCY,
    CopyRequest,
    S3Object,
    copy_objects,
    s3_error_code,
)

QUARANTINE_PREFIX = "_quarantine"
GiB = 1024**3
VANISHED_REASON = "the object version the event names no longer exists"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Budget:
    """What one run takes on. Receiving stops once a limit is reached; what was received is tried."""

    messages: int = 500
    bytes: int = 20 * GiB  # as the events state the objects' sizes
    # Well inside copy_events' execution_timeout (the last wave's copies run on after receiving
    # stops), which ends well before the queue's hold on the batch (its visibility timeout).
    seconds: float = COPY_EVENTS_TIMEOUT_S * 0.5  # no message is received after this many seconds
    copy_seconds: float = (
        COPY_EVENTS_TIMEOUT_S * 0.8
    )  # no copy is started after this many (an overrunning wave)

    def __str__(self) -> str:
        """The limits as the DAG's docs state them, e.g. `500 messages, 20 GiB of named objects or 5 minutes`."""
        return f"{self.messages} messages, {self.bytes / GiB:g} GiB of named objects or {self.seconds / 60:g} minutes"


def receive_size(budget: Budget, taken: int, taken_bytes: int) -> int:
    """How many messages the next receive asks for; 0 once the budget is reached.

    The first receive of a run that has nothing yet asks for one, to learn the sizes; after that,
    as many as the average size so far leaves room for in the byte budget, so a backlog of large
    objects does not take a run past its budget.
    """
    left = budget.messages - taken
    if left <= 0 or taken_bytes >= budget.bytes:
        return 0
    if not taken:
        return 1
    if taken_bytes:
        left = min(left, int((budget.bytes - taken_bytes) // (taken_bytes / taken)))
    return min(sqs.BATCH, left)


def quarantine_key(message_id: str, day: date) -> str:
    return f"{QUARANTINE_PREFIX}/{day_partition(day)}/{message_id}.json"


def quarantine(s3, bucket: str, message: ParsedMessage, day: date, reason: str, objects=()) -> str:
    """Write the message's body, the reason and the objects concerned to the quarantine prefix."""
    key = quarantine_key(message.message_id, day)
    document = {"message_id": message.message_id, "reason": reason, "body": message.body}
    if objects:
        document["objects"] = list(objects)
    s3.put_object(
        Bucket=bucket,
        Key=key,
        Body=json.dumps(document, ensure_ascii=False, indent=2).encode(),
        ContentType="application/json",
    )
    return key


def _version(source: S3Object) -> tuple:
    return source.bucket, source.key, source.version_id


def _named(o: ObjectCreated, **more) -> dict:
    return {"bucket": o.bucket, "key": o.key, "version_id": o.version_id, **more}


@dataclass
class _Summary:
    max_receive_count: int | None
    dead_letter_queue: str | None
    messages: int = 0
    waves: int = 0
    copied: int = 0
    bytes: int = 0
    copied_keys: list = field(default_factory=list)  # the target keys copied (CURATED's extra)
    deleted: int = 0
    released: int = 0
    test_events: int = 0
    quarantined: list = field(default_factory=list)
    vanished: list = field(default_factory=list)
    superseded: list = field(default_factory=list)
    failed: list = field(default_factory=list)
    kept: list = field(default_factory=list)
    dead_letters: list = field(default_factory=list)
    not_held: list = field(default_factory=list)
    not_released: list = field(default_factory=list)
    not_deleted: list = field(default_factory=list)


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
    wait_seconds: int = 0,
    **copy_options,
) -> dict:
    """Take `messages` (already received, e.g. by the wait) and then receive more while the budget
    allows, wave by wave; copy each wave's objects to `target_bucket` (same key) and settle its
    messages. Returns the run's summary (see `problems` for what should fail the task).

    `hold_seconds`: how long each message stays invisible from when this run takes it (the
    queue's visibility timeout). `wait_seconds`: each receive's long poll (0: the run ends as soon
    as the queue looks empty, and the next run's wait long-polls).
    """
    started = time.monotonic()
    policy = sqs.redrive_policy(sqs_client, queue_url)  # also: the queue is reachable
    summary = _Summary(
        policy.max_receive_count if policy else None, policy.dead_letter_queue if policy else None
    )
    wave = parse_messages(list({m["MessageId"]: m for m in messages}.values()))  # each message once
    hold_failures = sqs.set_visibility(sqs_client, queue_url, [m.handle for m in wave], hold_seconds)
    summary.not_held = [str(f) for f in hold_failures]
    lost = {f.message_id for f in hold_failures}
    taken, taken_bytes = len(wave), sum(m.size for m in wave)
    wave = [m for m in wave if m.message_id not in lost]
    while True:
        if wave:
            _settle(
                s3,
                sqs_client,
                queue_url,
                wave,
                target_bucket,
                day,
                started + budget.copy_seconds,
                summary,
                copy_options,
            )
        wanted = receive_size(budget, taken, taken_bytes)
        if not wanted or time.monotonic() >= started + budget.seconds:
            break
        wave = parse_messages(
            sqs.receive(sqs_client, queue_url, wanted, hold_seconds=hold_seconds, wait_seconds=wait_seconds)
        )
        if not wave:
            break
        taken, taken_bytes = taken + len(wave), taken_bytes + sum(m.size for m in wave)
    summary.messages = taken
    return asdict(summary)


def _settle(s3, sqs_client, queue_url, wave, target_bucket, day, copy_until, summary, copy_options) -> None:
    """Copy one wave's objects and delete, keep or release each of its messages."""
    summary.waves += 1
    objects = [o for m in wave if not m.poison for o in m.objects]
    max_concurrency = copy_options.get("max_concurrency", DEFAULT_MAX_CONCURRENCY)
    if time.monotonic() >= copy_until:  # the run overran: leave the wave for the next run
        plans = {}
    else:
        plans = plan_copies(s3, objects, max_concurrency=max_concurrency)
    sources = {}  # each exact version once, however many events name it
    for plan in plans.values():
        if plan.outcome == Outcome.COPY:
            sources.setdefault(_version(plan.source), plan.source)
    results = copy_objects(
        s3,
        [CopyRequest(source, target_bucket, source.key) for source in sources.values()],
        deadline=copy_until,
        **copy_options,
    )
    by_source = {_version(r.request.source): r for r in results}
    summary.copied += sum(r.ok for r in results)
    summary.copied_keys += [r.request.target_key for r in results if r.ok]
    summary.bytes += sum(r.size for r in results if r.ok)

    def outcome(o: ObjectCreated) -> tuple[Outcome | None, str]:
        """What happened to one object: an Outcome (COPY = copied), or None when not started."""
        plan = plans.get(o)
        if plan is None:
            return None, DEADLINE_PASSED
        if plan.outcome != Outcome.COPY:
            return plan.outcome, plan.detail
        result = by_source[_version(plan.source)]
        if result.ok:
            return Outcome.COPY, ""
        if result.error == DEADLINE_PASSED:
            return None, DEADLINE_PASSED
        return (Outcome.VANISHED if result.code in VANISHED_CODES else Outcome.FAILED), result.error

    done, later = [], []
    for message in wave:
        if message.poison:
            summary.quarantined.append(quarantine(s3, target_bucket, message, day, message.poison))
            done.append(message)
            continue
        summary.test_events += message.test_event
        outcomes = [(o, *outcome(o)) for o in message.objects]
        failed = [_named(o, error=detail) for o, result, detail in outcomes if result == Outcome.FAILED]
        if failed:
            _keep(message, failed, summary)
        elif any(result is None for _, result, _ in outcomes):
            later.append(message)  # not started: straight back for the next run
        else:
            vanished = [_named(o, error=d) for o, result, d in outcomes if result == Outcome.VANISHED]
            for o, result, detail in outcomes:
                if result == Outcome.SUPERSEDED:
                    summary.superseded.append(_named(o, reason=detail))
                    log.info(
                        "Not copied, superseded: %s/%s version %s: %s", o.bucket, o.key, o.version_id, detail
                    )
            if vanished:
                for item in vanished:
                    log.warning(
                        "Vanished, recorded: %(bucket)s/%(key)s version %(version_id)s: %(error)s", item
                    )
                summary.vanished += vanished
                summary.quarantined.append(
                    quarantine(s3, target_bucket, message, day, VANISHED_REASON, vanished)
                )
            done.append(message)
    release_failures = sqs.set_visibility(sqs_client, queue_url, [m.handle for m in later], 0)
    delete_failures = sqs.delete_messages(sqs_client, queue_url, [m.handle for m in done])
    summary.released += len(later)
    summary.deleted += len(done) - len(delete_failures)
    summary.not_released += [str(f) for f in release_failures]
    summary.not_deleted += [str(f) for f in delete_failures]


def _keep(message: ParsedMessage, failed: list[dict], summary: _Summary) -> None:
    """Leave a message whose copy failed on the queue; note it when this was its last receive."""
    summary.kept.append(message.message_id)
    summary.failed += failed
    limit = summary.max_receive_count
    last = limit is not None and message.receive_count is not None and message.receive_count >= limit
    if limit is None:
        where = "the queue has no redrive policy"
    else:
        where = f"receive {message.receive_count} of {limit}" + (
            f"; next: {summary.dead_letter_queue}" if last else ""
        )
    for item in failed:
        log.warning(
            "Copy failed, message %s kept (%s): %s/%s version %s: %s",
            message.message_id,
            where,
            item["bucket"],
            item["key"],
            item["version_id"],
            item["error"],
        )
    if last:
        summary.dead_letters.append(
            {"message_id": message.message_id, "receive_count": message.receive_count, "objects": failed}
        )


def outline(summary: dict) -> str:
    """One line for the log: what happened to the run's messages and objects."""
    counts = {k: summary[k] for k in ("messages", "deleted", "released", "copied", "test_events")}
    counts |= {k: len(summary[k]) for k in ("kept", "failed", "vanished", "superseded", "quarantined")}
    return ", ".join(f"{k} {v}" for k, v in counts.items())


def problems(summary: dict) -> list[str]:
    """Why a settled run should fail the task (empty: it should not).

    A failed copy is not one of them while the queue has a redrive policy: its message comes back,
    and after maxReceiveCount receives it waits in the dead-letter queue (`dead_letter_alert`).
    """
    found = []
    if summary["failed"] and summary["max_receive_count"] is None:
        shown = "; ".join(f"{f['key']}: {f['error']}" for f in summary["failed"][:5])
        found.append(
            f"{len(summary['failed'])} object(s) failed to copy and the queue has no redrive policy, so "
            f"their {len(summary['kept'])} message(s) would come back until they expire: {shown}"
        )
    if summary["not_deleted"]:
        found.append(
            f"{len(summary['not_deleted'])} message(s) were processed but SQS did not delete them (they will "
            f"be delivered and copied again, to the same keys): {'; '.join(summary['not_deleted'][:5])}"
        )
    return found


def dead_letter_alert(summary: dict, *, dag_id: str, run_id: str, day: date) -> dict:
    """The one alert for the messages on their last receive (`conveyor.alerts.publish` sends it)."""
    return {
        "dag_id": dag_id,
        "run_id": run_id,
        "date": day.isoformat(),
        "status": "dead-letter",
        "dead_letter_queue": summary["dead_letter_queue"],
        "what": (
            f"These events failed to copy on each of their {summary['max_receive_count']} receives; SQS "
            f"moves them to {summary['dead_letter_queue']} instead of delivering them again. The other "
            "events keep flowing. Fix the cause, then redrive (docs/runbook.md)."
        ),
        "events": summary["dead_letters"],
    }


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
