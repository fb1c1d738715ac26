"""SQS helpers: receive what is waiting, hold messages for the work, release or delete them.

Every batch call reports its per-message failures; nothing here drops a failure silently. A
failed visibility change or delete (`Failed` entries, such as a receipt handle that went stale
because the message became visible again and was received elsewhere) is returned to the caller,
which decides whether that message is processed and whether the run fails.
"""

from __future__ import annotations

from dataclasses import dataclass

BATCH = 10  # SQS batch calls take at most 10 entries


@dataclass(frozen=True)
class Failure:
    message_id: str
    code: str
    reason: str

    def __str__(self) -> str:
        return f"{self.message_id}: {self.code} {self.reason}".strip()


def receive_available(sqs, queue_url: str, limit: int) -> list[dict]:
    """Receive up to `limit` messages that are waiting now (no long poll), 10 per request."""
    received: list[dict] = []
    while len(received) < limit:
        batch = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=min(BATCH, limit - len(received)), WaitTimeSeconds=0
        ).get("Messages", [])
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
