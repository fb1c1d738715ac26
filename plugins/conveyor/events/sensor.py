"""The wait for S3 events on the queue: a quiet period skips the run, an error fails it.

The provider's `soft_fail=True` would do the first, but in deferrable mode (as MWAA runs it,
`default_deferrable=True`) it also turns every trigger error (AccessDenied, a KMS key the role
cannot use, a queue that does not exist) into a skip, and `@continuous` then starts the next run
at once: a silent hot loop. Here only the timeout skips, in poke and deferrable mode alike.

Its receives, in both modes, ask for each message's `ApproximateReceiveCount`, so the copy knows
when a message it cannot copy is on its last receive before the dead-letter queue.
"""

from __future__ import annotations

from airflow.providers.amazon.aws.sensors.sqs import SqsSensor
from airflow.providers.amazon.aws.triggers.sqs import SqsSensorTrigger
from airflow.sdk.exceptions import AirflowSensorTimeout, AirflowSkipException

from conveyor.sqs import RECEIVE_COUNT


def _receive_request(sensor) -> dict:
    request = {
        "QueueUrl": sensor.sqs_queue,
        "MaxNumberOfMessages": sensor.max_messages,
        "WaitTimeSeconds": sensor.wait_time_seconds,
        "MessageSystemAttributeNames": [RECEIVE_COUNT],
    }
    if sensor.visibility_timeout is not None:
        request["VisibilityTimeout"] = sensor.visibility_timeout
    return request


class EventQueueTrigger(SqsSensorTrigger):
    """`SqsSensorTrigger` whose receives return each message's receive count."""

    async def poll_sqs(self, client):
        return await client.receive_message(**_receive_request(self))


class EventQueueSensor(SqsSensor):
    """`SqsSensor` that skips when nothing arrived within `timeout` and fails on any error."""

    def __init__(self, **kwargs):
        if kwargs.get("soft_fail") or kwargs.get("never_fail"):
            raise ValueError("EventQueueSensor skips on timeout only; do not set soft_fail/never_fail")
        super().__init__(**kwargs)

    def poll_sqs(self, sqs_conn):
        return sqs_conn.receive_message(**_receive_request(self))

    def defer(self, *, trigger, **kwargs):
        # SqsSensor.execute builds the provider's trigger; wait with the same settings in ours.
        if type(trigger) is SqsSensorTrigger:
            trigger = EventQueueTrigger(**trigger.serialize()[1])
        super().defer(trigger=trigger, **kwargs)

    def _quiet(self, exc: AirflowSensorTimeout) -> AirflowSkipException:
        return AirflowSkipException(f"no message on the queue within {self.timeout:.0f}s: nothing to do")

    def execute(self, context):
        try:
            return super().execute(context)
        except AirflowSensorTimeout as exc:
            raise self._quiet(exc) from exc

    def resume_execution(self, next_method, next_kwargs, context):
        # A deferral that timed out comes back as AirflowSensorTimeout; a trigger that failed
        # as TaskDeferralError, and an error event as AirflowException: those fail the task.
        try:
            return super().resume_execution(next_method, next_kwargs, context)
        except AirflowSensorTimeout as exc:
            raise self._quiet(exc) from exc
