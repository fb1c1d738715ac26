"""S3 event notifications from SQS: parse, copy, and settle each message exactly once in effect.

A message body is an S3 event either raw or wrapped in an SNS envelope (`Type: Notification`,
the event as a JSON string in `Message`). `s3:TestEvent` messages carry no work; only
`ObjectCreated:*` records are kept; keys arrive URL-encoded (`+` for space, `%XX` escapes).
A body that is not JSON or not an S3 event is poison: it is quarantined (body and reason under
`_quarantine/` in the curated bucket) and then deleted, so it never blocks the queue.

A message is deleted only when every object it names was copied; otherwise it stays, comes back
after the visibility timeout, and after `maxReceiveCount` receives the redrive policy moves it to
the dead-letter queue. Copies are keyed by the object key, so duplicates and reordering are harmless.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date
from urllib.parse import unquote_plus

from conveyor.copying import CopyRequest, S3Object, copy_objects, s3_error_code

QUARANTINE_PREFIX = "_quarantine"


class PoisonMessage(ValueError):
    """The message is not an S3 event; the message says why."""


@dataclass(frozen=True)
class ObjectCreated:
    bucket: str
    key: str
    size: int
    etag: str | None = None


@dataclass
class ParsedMessage:
    message_id: str
    receipt_handle: str
    body: str
    objects: list[ObjectCreated] = field(default_factory=list)
    poison: str | None = None  # why the body is not an S3 event
    test_event: bool = False


def parse_body(body: str) -> tuple[list[ObjectCreated], bool]:
    """The ObjectCreated records of one message body, and whether it was an s3:TestEvent."""
    try:
        document = json.loads(body)
    except (json.JSONDecodeError, TypeError) as exc:
        raise PoisonMessage(f"body is not valid JSON: {exc}") from exc
    if isinstance(document, dict) and document.get("Type") == "Notification" and "Message" in document:
        try:
            document = json.loads(document["Message"])
        except (json.JSONDecodeError, TypeError) as exc:
            raise PoisonMessage(f"SNS envelope's Message is not valid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise PoisonMessage(f"expected a JSON object, got {type(document).__name__}")
    if document.get("Event") == "s3:TestEvent":
        return [], True
    records = document.get("Records")
    if not isinstance(records, list) or not records:
        raise PoisonMessage("not an S3 event: no Records list")

    created = []
    for index, record in enumerate(records):
        try:
            if record.get("eventSource") != "aws:s3":
                raise PoisonMessage(
                    f"record {index}: eventSource is {record.get('eventSource')!r}, not 'aws:s3'"
                )
            if not str(record["eventName"]).startswith("ObjectCreated:"):
                continue  # deletions, restores, ...: nothing to copy
            s3 = record["s3"]
            etag = s3["object"].get("eTag")
            created.append(
                ObjectCreated(
                    bucket=s3["bucket"]["name"],
                    key=unquote_plus(s3["object"]["key"]),
                    size=int(s3["object"].get("size", 0)),
                    etag=f'"{etag}"' if etag else None,
                )
            )
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            if isinstance(exc, PoisonMessage):
                raise
            raise PoisonMessage(f"record {index}: malformed S3 record ({type(exc).__name__}: {exc})") from exc
    return created, False


def receive_available(sqs, queue_url: str, limit: int) -> list[dict]:
    """Receive up to `limit` messages that are waiting now (no long poll), 10 per request."""
    received: list[dict] = []
    while len(received) < limit:
        batch = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=min(10, limit - len(received)), WaitTimeSeconds=0
        ).get("Messages", [])
        if not batch:
            break
        received.extend(batch)
    return received


def parse_messages(messages: list[dict]) -> list[ParsedMessage]:
    """SQS messages (as boto3 / SqsSensor return them) -> parsed, never raising for a bad body."""
    parsed = []
    for message in messages:
        item = ParsedMessage(message["MessageId"], message["ReceiptHandle"], message.get("Body", ""))
        try:
            item.objects, item.test_event = parse_body(item.body)
        except PoisonMessage as exc:
            item.poison = str(exc)
        parsed.append(item)
    return parsed


def quarantine_key(message_id: str, day: date) -> str:
    return f"{QUARANTINE_PREFIX}/year={day:%Y}/month={day:%m}/day={day:%d}/{message_id}.json"


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
    sqs,
    queue_url: str,
    messages: list[dict],
    target_bucket: str,
    day: date,
    **copy_options,
) -> dict:
    """Copy every object the messages name to `target_bucket` (same key), then delete exactly
    the messages that are done: all their copies succeeded, a test event, or quarantined poison.
    """
    parsed = parse_messages(messages)
    unique = {(o.bucket, o.key): o for m in parsed for o in m.objects}  # duplicates copy once
    results = copy_objects(
        s3,
        [
            CopyRequest(S3Object(o.bucket, o.key, o.size, o.etag), target_bucket, o.key)
            for o in unique.values()
        ],
        **copy_options,
    )
    failed = {(r.request.source.bucket, r.request.source.key): r.error for r in results if not r.ok}

    done, kept, quarantined = [], [], []
    for message in parsed:
        if message.poison:
            quarantined.append(quarantine(s3, target_bucket, message, day))
            done.append(message)
        elif any((o.bucket, o.key) in failed for o in message.objects):
            kept.append(message)
        else:
            done.append(message)
    deleted = delete_messages(sqs, queue_url, done)
    return {
        "messages": len(parsed),
        "deleted": deleted,
        "kept": [m.message_id for m in kept],
        "test_events": sum(m.test_event for m in parsed),
        "quarantined": quarantined,
        "copied": len(results) - len(failed),
        "bytes": sum(r.size for r in results if r.ok),
        "failed": [{"bucket": b, "key": k, "error": e} for (b, k), e in sorted(failed.items())],
    }


def copy_keys(s3, source_bucket: str, keys: list[str], target_bucket: str, **copy_options) -> dict:
    """Copy the named keys (same key) for a manual replay; raises naming every key that failed."""
    sources, missing = [], []
    for key in dict.fromkeys(keys):  # each key once, in the order given
        try:
            head = s3.head_object(Bucket=source_bucket, Key=key)
        except s3.exceptions.ClientError as exc:
            missing.append(f"{key}: {s3_error_code(exc)}")
            continue
        sources.append(S3Object(source_bucket, key, head["ContentLength"], head.get("ETag")))
    results = copy_objects(s3, [CopyRequest(o, target_bucket, o.key) for o in sources], **copy_options)
    failed = missing + [f"{r.request.source.key}: {r.error}" for r in results if not r.ok]
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(keys)} replay key(s) not copied: {'; '.join(failed[:10])}")
    return {"copied": len(results), "bytes": sum(r.size for r in results), "keys": [o.key for o in sources]}


def delete_messages(sqs, queue_url: str, messages: list[ParsedMessage]) -> int:
    """Delete in batches of 10; a message whose delete fails is simply delivered again."""
    deleted = 0
    for start in range(0, len(messages), 10):
        batch = messages[start : start + 10]
        response = sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m.receipt_handle} for i, m in enumerate(batch)],
        )
        deleted += len(response.get("Successful", []))
    return deleted
