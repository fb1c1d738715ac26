"""The README's "first ten minutes", run as written, in order, on a stack of their own.

Only two things differ from a user's shell: the stack lives in a temporary CONVEYOR_LOCAL_DIR
(so `.local/` in the commands is that directory), and `make airflow` is left to
tests/scheduler, which starts it and drives it through the REST API.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
HEADING = "### The first ten minutes (no Docker)"


def first_ten_minutes() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    block = re.search(re.escape(HEADING) + r"\s+```bash\n(.*?)```", readme, re.S)
    assert block, f"README has no bash block under {HEADING!r}"
    commands = [line.split("  #")[0].strip() for line in block.group(1).splitlines()]
    return [c for c in commands if c]


def test_the_readme_commands_work_as_written_in_order_and_a_stopped_stack_says_so(tmp_path):
    commands = first_ten_minutes()
    assert commands[0] == "make services" and commands[-1] == "make services-stop"
    local_dir = tmp_path / "local"
    script = ["set -euo pipefail"]
    for command in commands:
        if command == "make airflow":
            continue  # tests/scheduler
        script.append(f"echo {shlex.quote('$ ' + command)}")
        script.append(command.replace(".local/", f"{local_dir}/"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "AWS_"))}
    env["CONVEYOR_LOCAL_DIR"] = str(local_dir)
    try:
        result = subprocess.run(
            ["bash", "-c", "\n".join(script)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        subprocess.run(["make", "-s", "services-stop"], cwd=ROOT, env=env, capture_output=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    listed = output.split("$ airflow dags list", 1)[1].split("$ ", 1)[0]
    for dag_id in (
        "nightly_file_ingestion",
        "s3_event_copy",
        "retail_data_generator",
        "inbound_to_stage",
        "totesys_etl",
    ):
        assert dag_id in listed, listed
    nightly = output.split("$ airflow dags test nightly_file_ingestion", 1)[1].split("$ ", 1)[0]
    assert "state=success" in nightly, nightly[-3000:]
    assert re.search(r"'name': 'movies', 'bytes': [1-9]", nightly), "the sample files were copied"
    totesys = output.split("$ airflow dags test totesys_etl", 1)[1].split("$ ", 1)[0]
    assert "state=success" in totesys, totesys[-3000:]
    assert "XCom not found" not in output
    assert "Could not import graphviz" not in output
    assert "sample data: 5 MovieLens-style files" in output.split("$ make seed", 1)[1]

    # After `make services-stop`: an Airflow command says the stack is down, at once.
    stopped = subprocess.run(
        [
            "bash",
            "-c",
            f"source {local_dir}/env.sh && airflow dags test nightly_file_ingestion 2024-03-05T20:00:00+00:00",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert stopped.returncode != 0
    assert "the local stack is down: run `make services`" in stopped.stderr
