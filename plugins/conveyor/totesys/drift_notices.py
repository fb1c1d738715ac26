"""Each schema change the drift check logs (`staging.schema_changes`) as one message on the
notifications topic: at least once, and never once per run.

The log is an outbox. `drift.reconcile` writes the changes in its transaction; once it has
committed (the run carries on or stops), `publish_pending` sends every row not yet sent, oldest
first, each in a short transaction of its own: the row is locked (a run publishing at the same time
skips it, `SKIP LOCKED`), published, and marked with the SNS message id and the run that sent it. A
publish that fails (the topic unreachable, missing or denied) leaves that row and the ones after it
unsent and the run goes on as its policy says; the next run sends them. Only a crash between a
publish and its mark sends a change twice. A failure is logged once per reference schema (a run
that fails again the same way logs nothing), so it is sent once too.
"""

from __future__ import annotations

import logging

from conveyor import alerts, resources

log = logging.getLogger(__name__)

STATUS = "schema_change"  # the message's `status` (and its SNS message attribute)
POLICY_PAGE = "docs/schema-drift.md"
_ROW = (
    "change_id, table_name, column_name, change, old_value, new_value, window_name, action, detail, "
    "compared_with, detected_at, run_id"
)


def message(row: dict, dag_id: str) -> dict:
    """One logged change (a `staging.schema_changes` row) as the JSON the topic gets."""
    return {
        "status": STATUS,
        "dag_id": dag_id,
        "run_id": row["run_id"],  # the run that detected it
        "table": row["table_name"],
        "column": row["column_name"],  # None for a table the config added or removed
        "change": row["change"],
        "old": row["old_value"],
        "new": row["new_value"],
        "window": row["window_name"],
        "action": row["action"],  # carry: the run went on; fail: it stopped before anything landed
        "detail": row["detail"],
        "compared_with": row["compared_with"],
        "detected_at": row["detected_at"].isoformat(),
        "change_id": row["change_id"],  # in staging.schema_changes
        "policy": POLICY_PAGE,
    }


def subject(msg: dict) -> str:
    """`[conveyor] totesys_etl schema change address.region: added, carried` (or `..., run STOPPED`)."""
    name = f"{msg['table']}.{msg['column']}" if msg["column"] else msg["table"]
    outcome = "run STOPPED" if msg["action"] == "fail" else "carried"
    return f"[conveyor] {msg['dag_id']} schema change {name}: {msg['change']}, {outcome}"


def publish_pending(conn, dag_id: str, run_id: str, aws_conn_id: str = resources.AWS_CONN_ID) -> int:
    """Publish every logged change not yet on the notifications topic, oldest first; returns how many
    this call sent. Never raises: what it could not send is logged as a warning and stays for the
    next run (the topic is resolved only when something is pending)."""
    from psycopg.rows import dict_row

    pending, sent = [], 0
    try:
        pending = [
            change_id
            for (change_id,) in conn.execute(
                "SELECT change_id FROM staging.schema_changes WHERE message_id IS NULL ORDER BY change_id"
            )
        ]
        conn.commit()
        if not pending:
            return 0
        topic_arn = alerts.notifications_topic_arn(aws_conn_id)
        for change_id in pending:
            with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
                row = cur.execute(
                    f"SELECT {_ROW} FROM staging.schema_changes WHERE change_id = %s AND message_id IS NULL "
                    "FOR UPDATE SKIP LOCKED",
                    (change_id,),
                ).fetchone()
                if row is None:
                    continue  # another run has sent it, or is sending it now
                msg = message(row, dag_id)
                message_id = alerts.publish(msg, topic_arn, aws_conn_id, subject=subject(msg))
                cur.execute(
                    "UPDATE staging.schema_changes SET message_id = %s, notified_by = %s WHERE change_id = %s",
                    (message_id, run_id, change_id),
                )
            sent += 1
            log.info("schema change %s sent to the notifications topic: %s", change_id, subject(msg))
    except Exception as exc:  # the run goes on: the log keeps what was not sent, the next run sends it
        log.warning(
            "schema drift: logged changes not sent to the notifications topic (%d of %d pending sent); "
            "the next run sends the rest (staging.schema_changes WHERE message_id IS NULL): %s: %s",
            sent,
            len(pending),
            type(exc).__name__,
            exc,
        )
    return sent
