"""S3 event notifications as SQS delivers them: parse each message, never raising for a bad one.

A message body is an S3 event either raw or wrapped in an SNS envelope (`Type: Notification`,
the event as a JSON string in `Message`). `s3:TestEvent` messages carry no work; only
`ObjectCreated:*` records are kept; keys arrive URL-encoded (`+` for space, `%XX` escapes).
A record of a versioned bucket names the object version it announces (`s3.object.versionId`;
moto's notifications leave it out). A body that is not JSON or not an S3 event is poison: the
message says why.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from urllib.parse import unquote_plus

from conveyor.sqs import RECEIVE_COUNT


class PoisonMessage(ValueError):
    """The message is not an S3 event; the message says why."""


@dataclass(frozen=True)
class ObjectCreated:
    bucket: str
    key: str
    size: int
    version_id: str | None = None  # the version announced (None: not named, e.g. by moto)


@dataclass
class ParsedMessage:
    message_id: str
    receipt_handle: str
    body: str
    objects: list[ObjectCreated] = field(default_factory=list)
    poison: str | None = None  # why the body is not an S3 event
    test_event: bool = False
    receive_count: int | None = None  # SQS ApproximateReceiveCount, this receive included

    @property
    def handle(self) -> dict:
        """The message as the SQS batch calls take it."""
        return {"MessageId": self.message_id, "ReceiptHandle": self.receipt_handle}

    @property
    def size(self) -> int:
        """Bytes to copy for this message (as the events state them)."""
        return sum(o.size for o in self.objects)


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
            created.append(
                ObjectCreated(
                    bucket=s3["bucket"]["name"],
                    key=unquote_plus(s3["object"]["key"]),
                    size=int(s3["object"].get("size", 0)),
                    version_id=str(s3["object"].get("versionId") or "") or None,
                )
            )
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            if isinstance(exc, PoisonMessage):
                raise
            raise PoisonMessage(f"record {index}: malformed S3 record ({type(exc).__name__}: {exc})") from exc
    return created, False


def parse_messages(messages: list[dict]) -> list[ParsedMessage]:
    """SQS messages (as boto3 / SqsSensor return them) -> parsed, never raising for a bad body."""
    parsed = []
    for message in messages:
        item = ParsedMessage(message["MessageId"], message["ReceiptHandle"], message.get("Body", ""))
        count = message.get("Attributes", {}).get(RECEIVE_COUNT)
        item.receive_count = int(count) if count is not None else None
        try:
            item.objects, item.test_event = parse_body(item.body)
        except PoisonMessage as exc:
            item.poison = str(exc)
        parsed.append(item)
    return parsed
