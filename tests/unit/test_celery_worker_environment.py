"""A local Celery worker (CONVEYOR_EXECUTOR=celery) gets only what MWAA gives its workers: the
packaged DAGs and plugins.zip in a directory of its own, the shared Airflow configuration and
connections, and no path into the checkout or the scheduler's files."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from conveyor_local import package, stack

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def celery_state(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVEYOR_LOCAL_DIR", str(tmp_path / "local"))
    monkeypatch.setenv("AIRFLOW__CONVEYOR__TOTESYS_CRON", "* * * * *")
    return {
        "executor": "celery",
        "moto": {"port": 5999},
        "redis": {"port": 6999},
        "snowflake": {"port": 7999},
        "postgres": {"dsn": "postgresql://postgres:secret@127.0.0.1:5432/postgres"},
        "airflow": {"port": 8999},
    }


def test_a_worker_is_built_from_the_packaged_artefacts_with_an_environment_of_its_own(celery_state):
    dist = stack.local_dir() / "dist"
    package.build(out=dist)
    root = stack._build_worker("worker-1", dist)
    env = stack.worker_environment(celery_state, "worker-1", root)
    home = root / "airflow"

    assert (home / "dags" / "totesys_etl.py").read_bytes() == (dist / "dags" / "totesys_etl.py").read_bytes()
    assert (home / "plugins" / "conveyor" / "__init__.py").exists()
    assert env["AIRFLOW_HOME"] == str(home)
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == str(home / "dags")
    assert env["AIRFLOW__CORE__PLUGINS_FOLDER"] == str(home / "plugins")
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://127.0.0.1:6999/0"
    assert env["AIRFLOW__CONVEYOR__TOTESYS_CRON"] == "* * * * *", "config options reach every component"
    assert "AIRFLOW_CONN_SNOWFLAKE_DEFAULT" in env and "AIRFLOW_CONN_AWS_DEFAULT" in env
    assert "PYTHONPATH" not in env
    forbidden = [str(ROOT / d) for d in ("plugins", "local", "dags", "include")] + [str(stack.airflow_home())]
    leaks = {k: v for k, v in env.items() if any(f in v for f in forbidden)}
    assert not leaks, f"the worker would reach the checkout or the scheduler's files: {leaks}"

    # Its interpreter imports conveyor from its own plugins/ (Airflow puts that on sys.path, as
    # MWAA does), never from the checkout; the local tooling is not importable at all.
    probe = (
        "import airflow.configuration, importlib.util, conveyor; print(conveyor.__file__); "
        "print(importlib.util.find_spec('conveyor_local'))"
    )
    result = subprocess.run(
        [str(stack._worker_python()), "-c", probe], cwd=root, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    conveyor_file, local_spec = result.stdout.split()[-2:]
    assert Path(conveyor_file).is_relative_to(home / "plugins"), conveyor_file
    assert local_spec == "None"
