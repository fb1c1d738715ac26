"""Every DAG file imports cleanly, fast, and without touching the network or a database."""

from __future__ import annotations

import socket
import sqlite3
import time
from contextlib import ExitStack
from pathlib import Path
from unittest import mock

import pytest
import sqlalchemy.engine
import sqlalchemy.orm

from conveyor.defaults import Tag

DAGS = Path(__file__).resolve().parents[2] / "dags"
DAG_FILES = sorted(p for p in DAGS.glob("*.py") if not p.name.startswith("_"))


class IOAtParseTime(AssertionError):
    pass


def _forbidden(*args, **kwargs):
    raise IOAtParseTime("network or database access while importing a DAG file")


def _blocked_io() -> ExitStack:
    stack = ExitStack()
    for target, attribute in [
        (socket.socket, "connect"),
        (socket.socket, "connect_ex"),
        (socket, "create_connection"),
        (socket, "getaddrinfo"),
        (sqlite3, "connect"),
        (sqlalchemy.engine.Engine, "connect"),
        (sqlalchemy.engine.Engine, "raw_connection"),
        (sqlalchemy.orm.Session, "execute"),
    ]:
        stack.enter_context(mock.patch.object(target, attribute, _forbidden))
    return stack


def test_there_are_dag_files():
    assert DAG_FILES, f"no DAG files found in {DAGS}"


def test_io_blocker_blocks():
    """The guard used below really stops connections (else the parse test proves nothing)."""
    with _blocked_io(), pytest.raises(IOAtParseTime):
        socket.create_connection(("127.0.0.1", 9))
    with _blocked_io(), pytest.raises(IOAtParseTime):
        sqlite3.connect(":memory:")


BAD_DAG = """
from datetime import datetime, timezone
from airflow.sdk import dag, task
{io}
@dag(schedule=None, start_date=datetime(2024, 1, 1, tzinfo=timezone.utc))
def bad():
    @task
    def t(): pass
    t()
bad()
"""


@pytest.mark.parametrize(
    "io",
    [
        "import boto3; boto3.client('s3', region_name='eu-west-2', endpoint_url='http://127.0.0.1:9').list_buckets()",
        "from airflow.models import Variable as V; from airflow.settings import Session; Session().execute(__import__('sqlalchemy').text('select 1'))",
        "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9/', timeout=1)",
    ],
    ids=["boto3", "metadata-db", "http"],
)
def test_parse_check_catches_io_at_import(tmp_path, io):
    """A DAG file doing I/O at import time fails the same check the real DAG files pass."""
    from airflow.dag_processing.dagbag import DagBag

    path = tmp_path / "bad.py"
    path.write_text(BAD_DAG.format(io=io))
    with _blocked_io():
        bag = DagBag(dag_folder=str(path))
    assert bag.import_errors, "I/O at parse time went unnoticed"
    assert "IOAtParseTime" in next(iter(bag.import_errors.values()))


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_dag_file_imports_without_io_in_under_a_second(path):
    from airflow.dag_processing.dagbag import DagBag

    DagBag(dag_folder=str(path))  # warm up imports shared by all files
    with _blocked_io():
        started = time.perf_counter()
        bag = DagBag(dag_folder=str(path))
        elapsed = time.perf_counter() - started
    assert not bag.import_errors, bag.import_errors
    assert bag.dags, f"{path.name} defines no DAG"
    assert elapsed < 1.0, f"{path.name} took {elapsed:.2f}s to parse"


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_dag_conventions(path):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(path))
    known_tags = {t.value for t in Tag}
    for dag_id, dag in bag.dags.items():
        assert dag_id == path.stem, "one DAG per file, named like the file"
        assert dag.doc_md, f"{dag_id} has no doc_md"
        assert dag.tags and set(dag.tags) <= known_tags, (
            f"{dag_id} tags {dag.tags} not from conveyor.defaults.Tag"
        )
        assert not dag.catchup, f"{dag_id} must not catch up by default"
        for task in dag.tasks:
            assert task.owner not in (None, "", "airflow"), f"{dag_id}.{task.task_id} has no owner"
            assert task.retries >= 1, f"{dag_id}.{task.task_id} has no retries"
