"""The wait for S3 events on the queue: a quiet period skips the run, an error fails it.

The provider's `soft_fail=True` would do the first, but in deferrable mode (as MWAA runs it,
`default_deferrable=True`) it also turns every trigger error (AccessDenied, a KMS key the role
cannot use, a queue that does not exist) into a skip, and `@continuous` then starts the next run
at once: a silent hot loop. Here only the timeout skips, in poke and deferrable mode alike.
"""

from __future__ import annotations

from airflow.providers.amazon.aws.sensors.sqs import SqsSensor
from airflow.sdk.exceptions import AirflowSensorTimeout, AirflowSkipException


class EventQueueSensor(SqsSensor):
    """`SqsSensor` that skips when nothing arrived within `timeout` and fails on any error."""

    def __init__(self, **kwargs):
        if kwargs.get("soft_fail") or kwargs.get("never_fail"):
            raise ValueError("EventQueueSensor skips on timeout only; do not set soft_fail/never_fail")
        super().__init__(**kwargs)

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
