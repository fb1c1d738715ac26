"""One Airflow for every scheduler test module: `make airflow` on a stack of its own (free ports, a
temporary CONVEYOR_LOCAL_DIR), started once per session (about 45 s) and stopped afterwards.

`totesys_etl` runs every minute here (its cron is an Airflow config option), so a scheduled run
comes within a minute, and a task retries after 5 s, then 10 s (`conveyor.retry_delay_seconds`),
so a run that fails for good does so in seconds, not minutes. Every DAG starts paused: a test unpauses the DAGs it drives and pauses them
again when it is done, so modules do not feed each other runs.
"""

from __future__ import annotations

import pytest

from conveyor_local.airflow_api import scratch_airflow


@pytest.fixture(scope="session")
def airflow():
    with scratch_airflow(
        AIRFLOW__CONVEYOR__TOTESYS_CRON="* * * * *", AIRFLOW__CONVEYOR__RETRY_DELAY_SECONDS="5"
    ) as scratch:
        yield scratch
