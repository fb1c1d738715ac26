"""A small client for Airflow's public REST API (`/api/v2`), the one the UI uses: what the
scheduler tests, the latency bench and scripted checks drive Airflow through.

    api = AirflowAPI.for_stack()               # the `make airflow` instance of the local stack
    api.unpause("nightly_file_ingestion")
    backfill = api.backfill("nightly_file_ingestion", "2024-03-02T20:00:00Z", "2024-03-04T20:00:00Z")
    runs = api.wait_for_runs("nightly_file_ingestion", lambda r: r["run_type"] == "backfill", count=3)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

FINISHED = {"success", "failed"}


class AirflowAPIError(RuntimeError):
    pass


class AirflowAPI:
    def __init__(self, url: str, username: str, password: str):
        self.url = url.rstrip("/")
        self.username, self.password = username, password
        self._token: str | None = None

    @classmethod
    def for_stack(cls) -> AirflowAPI:
        """The Airflow that `make airflow` started on the local stack (CONVEYOR_LOCAL_DIR)."""
        from conveyor_local import stack

        state = stack.load_state()
        port = state.get("airflow", {}).get("port")
        if not (port and stack._alive(state["airflow"].get("pid"))):
            raise SystemExit("Airflow is not running on the local stack: run `make airflow`")
        password = json.loads((stack.airflow_home() / "passwords.json").read_text())["admin"]
        return cls(f"http://127.0.0.1:{port}", "admin", password)

    # --- HTTP ------------------------------------------------------------------------------------

    def _send(self, method: str, path: str, body: dict | None = None, auth: bool = True) -> dict:
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.token()}"
        request = urllib.request.Request(
            f"{self.url}{path}",
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers=headers,
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            raise AirflowAPIError(
                f"{method} {path}: {exc.code} {exc.read().decode(errors='replace')}"
            ) from None

    def token(self) -> str:
        if self._token is None:
            self._token = self._send(
                "POST", "/auth/token", {"username": self.username, "password": self.password}, auth=False
            )["access_token"]
        return self._token

    # --- what users do ---------------------------------------------------------------------------

    def health(self) -> dict:
        return self._send("GET", "/api/v2/monitor/health", auth=False)

    def dags(self) -> list[dict]:
        return self._send("GET", "/api/v2/dags?limit=100&order_by=dag_id")["dags"]

    def dag_details(self, dag_id: str) -> dict:
        return self._send("GET", f"/api/v2/dags/{dag_id}/details")

    def backfills(self, dag_id: str) -> list[dict]:
        return self._send("GET", f"/api/v2/backfills?dag_id={dag_id}")["backfills"]

    def unpause(self, dag_id: str) -> dict:
        return self._send("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})

    def pause(self, dag_id: str) -> dict:
        return self._send("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": True})

    def settle(self, dag_id: str, timeout: float = 300) -> None:
        """Pause `dag_id` with none of its runs left unfinished.

        Pausing alone can strand a run: the scheduler examines only unpaused DAGs' runs, so a run
        that was running when the DAG was paused stays `running` until it is unpaused. So: pause;
        while a run is unfinished, unpause until it finishes, and pause again (the scheduler may
        have created the next run in between: it is waited for in turn)."""
        deadline = time.monotonic() + timeout
        while True:
            self.pause(dag_id)
            unfinished = {r["dag_run_id"] for r in self.runs(dag_id) if r["state"] not in FINISHED}
            if not unfinished:
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{dag_id}: runs {sorted(unfinished)} unfinished after {timeout:.0f}s")
            self.unpause(dag_id)
            self.wait_for_runs(
                dag_id, lambda r, ids=unfinished: r["dag_run_id"] in ids, count=len(unfinished), timeout=left
            )

    def trigger(self, dag_id: str, conf: dict | None = None, logical_date: str | None = None) -> dict:
        return self._send(
            "POST", f"/api/v2/dags/{dag_id}/dagRuns", {"conf": conf or {}, "logical_date": logical_date}
        )

    def backfill(self, dag_id: str, from_date: str, to_date: str, **options) -> dict:
        body = {"dag_id": dag_id, "from_date": from_date, "to_date": to_date, **options}
        return self._send("POST", "/api/v2/backfills", body)

    def runs(self, dag_id: str) -> list[dict]:
        return self._send("GET", f"/api/v2/dags/{dag_id}/dagRuns?limit=100&order_by=logical_date")["dag_runs"]

    def set_run_state(self, dag_id: str, run_id: str, state: str) -> dict:
        """Mark a run `success` or `failed` (the UI's "Mark run as"); its unfinished tasks follow."""
        run = urllib.parse.quote(run_id, safe="")
        return self._send("PATCH", f"/api/v2/dags/{dag_id}/dagRuns/{run}", {"state": state})

    def deadlines(self, dag_id: str, run_id: str) -> list[dict]:
        """A run's deadlines as the UI lists them (`deadline_time`, `missed`); a deadline met is
        deleted when its run succeeds. (A UI endpoint: the public API has none in 3.3.)"""
        run = urllib.parse.quote(run_id, safe="")
        return self._send("GET", f"/ui/dags/{dag_id}/dagRuns/{run}/deadlines")["deadlines"]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        return self._send("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=100")[
            "task_instances"
        ]

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
        """A task try's log as text: each event on a line, with its fields (an exception's
        details among them) as JSON after it."""
        run = urllib.parse.quote(run_id, safe="")
        content = self._send(
            "GET",
            f"/api/v2/dags/{dag_id}/dagRuns/{run}/taskInstances/{task_id}/logs/{try_number}?full_content=true",
        )["content"]
        lines = []
        for line in content:
            if isinstance(line, str):
                lines.append(line)
                continue
            fields = {k: v for k, v in line.items() if k not in ("event", "timestamp")}
            lines.append(
                f"{line.get('event', '')} {json.dumps(fields, default=str)}" if fields else line["event"]
            )
        return "\n".join(lines)

    def wait_for_runs(
        self,
        dag_id: str,
        which: Callable[[dict], bool],
        count: int = 1,
        timeout: float = 300,
        poll: float = 1.0,
    ) -> list[dict]:
        """Wait until `count` runs that `which` selects have finished; returns them (oldest first)."""
        deadline = time.monotonic() + timeout
        while True:
            selected = [r for r in self.runs(dag_id) if which(r)]
            finished = [r for r in selected if r["state"] in FINISHED]
            if len(finished) >= count:
                return finished
            if time.monotonic() > deadline:
                states = [(r["dag_run_id"], r["state"]) for r in selected]
                raise TimeoutError(
                    f"{dag_id}: {len(finished)} of {count} runs finished in {timeout:.0f}s: {states}"
                )
            time.sleep(poll)

    def wait_until_healthy(self, timeout: float = 180) -> dict:
        """Wait until the scheduler, triggerer and dag-processor all report healthy."""
        deadline = time.monotonic() + timeout
        health: dict = {}
        while time.monotonic() < deadline:
            try:
                health = self.health()
            except (OSError, AirflowAPIError):
                health = {}
            parts = ("metadatabase", "scheduler", "triggerer", "dag_processor")
            if health and all((health.get(p) or {}).get("status") == "healthy" for p in parts):
                return health
            time.sleep(1)
        raise TimeoutError(f"Airflow did not become healthy in {timeout:.0f}s: {health}")


@dataclass
class ScratchAirflow:
    """`make airflow` on a stack of its own: where it lives, what it provisioned, how to reach it."""

    local_dir: Path
    info: dict  # `python -m conveyor_local describe`
    api: AirflowAPI
    s3: object

    def bucket(self, kind: str) -> str:
        return self.info["buckets"][kind]

    def keys(self, kind: str, prefix: str = "") -> list[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket(kind), Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def failure_detail(self, dag_id: str, run: dict) -> str:
        """A run's task states and the end of Airflow's log, for an assertion message."""
        states = {t["task_id"]: t["state"] for t in self.api.task_instances(dag_id, run["dag_run_id"])}
        stack = json.loads((self.local_dir / "stack.json").read_text())
        log = Path(stack["airflow"]["log"]).read_text(errors="replace")[-3000:]
        return f"{run['dag_run_id']}: {states}\n{log}"


@contextmanager
def scratch_airflow(**airflow_env: str) -> Iterator[ScratchAirflow]:
    """Start `make airflow` in a temporary CONVEYOR_LOCAL_DIR on free ports (never a stack the
    developer has running, nor their CONVEYOR_POSTGRES_DSN); stop all of it afterwards.
    `airflow_env`: extra environment, e.g. AIRFLOW__CONVEYOR__TOTESYS_CRON."""
    import boto3

    from conveyor_local.stack import ACCESS_KEY, free_port

    with tempfile.TemporaryDirectory(prefix="conveyor-airflow-") as tmp:
        port = free_port()
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("AIRFLOW", "AWS_")) and k != "CONVEYOR_POSTGRES_DSN"
        }
        env.update(
            CONVEYOR_LOCAL_DIR=tmp,
            CONVEYOR_AIRFLOW_PORT=str(port),
            CONVEYOR_MOTO_PORT=str(free_port()),
            **airflow_env,
        )

        def conveyor_local(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run(
                [sys.executable, "-m", "conveyor_local", *args],
                env=env,
                capture_output=True,
                text=True,
                timeout=400,
            )

        try:
            started = conveyor_local("airflow")
            if started.returncode:
                raise RuntimeError(
                    f"could not start Airflow:\n{started.stdout[-3000:]}{started.stderr[-3000:]}"
                )
            info = json.loads(conveyor_local("describe").stdout)
            password = json.loads((Path(tmp) / "airflow" / "passwords.json").read_text())["admin"]
            s3 = boto3.client(
                "s3",
                endpoint_url=info["endpoint_url"],
                aws_access_key_id=ACCESS_KEY,
                aws_secret_access_key=ACCESS_KEY,
                region_name=info["region"],
            )
            yield ScratchAirflow(
                Path(tmp), info, AirflowAPI(f"http://127.0.0.1:{port}", "admin", password), s3
            )
        finally:
            conveyor_local("stop")
