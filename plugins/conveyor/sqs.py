"""SQS helpers: receive what is waiting, hold messages for the work, release or delete them.

Every batch call reports its per-message failures; nothing here drops a failure silently. A
failed visibility change or delete (`Failed` entries, such as a receipt handle that went stale
because the message became visible again and was received elsewhere) is returned to the caller,
which decides whether that message is processed and whether the run fails. Every receive asks
for each message's `ApproximateReceiveCount`, so the caller knows a message's last receive
before the redrive policy moves it to the dead-letter queue.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

BATCH = 10  # SQS batch calls take at most 10 entries
RECEIVE_COUNT = "ApproximateReceiveCount"  # receives so far, this one included


@dataclass(frozen=True)
class Failure:
    message_id: str
    code: str
    reason: str

    def __str__(self) -> str:
        return f"{self.message_id}: {self.code} {self.reason}".strip()


@dataclass(frozen=True)
class RedrivePolicy:
    """Where a message goes after `max_receive_count` receives without being deleted."""

    max_receive_count: int
    dead_letter_queue_arn: str

    @property
    def dead_letter_queue(self) -> str:
        return self.dead_letter_queue_arn.rsplit(":", 1)[-1]


def redrive_policy(sqs, queue_url: str) -> RedrivePolicy | None:
    """The queue's redrive policy as SQS has it now; None when the queue has none."""
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["RedrivePolicy"])
    policy = attributes.get("Attributes", {}).get("RedrivePolicy")
    if not policy:
        return None
    policy = json.loads(policy)
    return RedrivePolicy(int(policy["maxReceiveCount"]), policy["deadLetterTargetArn"])


def receive(
    sqs, queue_url: str, count: int, *, hold_seconds: int | None = None, wait_seconds: int = 0
) -> list[dict]:
    """One ReceiveMessage of up to `count` (at most 10) messages, with their receive counts.

    `hold_seconds`: hidden for that long from now (default: the queue's visibility timeout).
    `wait_seconds` > 0 long-polls, which asks every SQS server (a short poll samples some of them
    and can answer with nothing while messages wait).
    """
    request = {
        "QueueUrl": queue_url,
        "MaxNumberOfMessages": min(BATCH, count),
        "WaitTimeSeconds": wait_seconds,
        "MessageSystemAttributeNames": [RECEIVE_COUNT],
    }
    if hold_seconds is not None:
        request["VisibilityTimeout"] = hold_seconds
    return sqs.receive_message(**request).get("Messages", [])


def receive_available(sqs, queue_url: str, limit: int) -> list[dict]:
    """Receive up to `limit` messages that are waiting now (no long poll), 10 per request."""
    received: list[dict] = []
    while len(received) < limit:
        batch = receive(sqs, queue_url, limit - len(received))
        if not batch:
            break
        received.extend(batch)
    return received


def _batched(sqs_call, queue_url: str, messages: list[dict], **entry_fields) -> list[Failure]:
    failures: list[Failure] = []
    for start in range(0, len(messages), BATCH):
        chunk = messages[start : start + BATCH]
        response = sqs_call(
            QueueUrl=queue_url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], **entry_fields}
                for i, m in enumerate(chunk)
            ],
        )
        for failed in response.get("Failed", []):
            failures.append(
                Failure(
                    chunk[int(failed["Id"])]["MessageId"],
                    failed.get("Code", "Failed"),
                    failed.get("Message", ""),
                )
            )
    return failures


def set_visibility(sqs, queue_url: str, messages: list[dict], seconds: int) -> list[Failure]:
    """Hide the messages for `seconds` from now (0 = visible again at once); returns the failures."""
    return _batched(sqs.change_message_visibility_batch, queue_url, messages, VisibilityTimeout=seconds)


def delete_messages(sqs, queue_url: str, messages: list[dict]) -> list[Failure]:
    """Delete the messages in batches of 10; returns the ones SQS did not delete."""
    return _batched(sqs.delete_message_batch, queue_url, messages)
