"""Every DAG file imports cleanly, cheaply, and without touching the network or a database."""

from __future__ import annotations

import socket
import sqlite3
from contextlib import ExitStack
from pathlib import Path
from unittest import mock

import pytest
import sqlalchemy.engine
import sqlalchemy.orm

from conveyor.defaults import CONTINUOUS_SINCE, Tag

# One worker of `make test` runs the whole module: its parse report is made once, not per worker.
pytestmark = pytest.mark.xdist_group("dag_integrity")

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
def test_dag_file_imports_without_io(path):
    from airflow.dag_processing.dagbag import DagBag

    with _blocked_io():
        bag = DagBag(dag_folder=str(path))
    assert not bag.import_errors, bag.import_errors
    assert bag.dags, f"{path.name} defines no DAG"


# The DAG processor re-parses every file every few seconds: parsing must stay cheap. Measured in a
# fresh interpreter as what the processor pays: which heavy libraries a parse imports (none: they
# load when a task runs) and the parse's CPU time, which, unlike wall-clock time, does not grow when
# the machine is busy with other work.
HEAVY = ("pyarrow", "pandas", "numpy", "psycopg", "snowflake", "sqlglot", "fakesnow")
PARSE_PROBE = """
import json, sys, time
HEAVY = json.loads(sys.argv[1])
from airflow.dag_processing.dagbag import DagBag
report = {}
for path in sys.argv[2:]:
    before = set(sys.modules)
    DagBag(dag_folder=path)  # first parse: imports what the file needs
    heavy = sorted({m.split(".")[0] for m in set(sys.modules) - before} & set(HEAVY))
    started = time.process_time()
    DagBag(dag_folder=path)  # a re-parse, as the DAG processor does all day
    report[path] = {"heavy": heavy, "cpu_s": time.process_time() - started}
print("REPORT " + json.dumps(report))
"""


@pytest.fixture(scope="module")
def parse_report():
    import json
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", PARSE_PROBE, json.dumps(HEAVY), *map(str, DAG_FILES)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("REPORT ")]
    assert result.returncode == 0 and lines, result.stdout[-2000:] + result.stderr[-2000:]
    return json.loads(lines[-1].removeprefix("REPORT "))


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_parsing_imports_no_heavy_library_and_costs_little_cpu(parse_report, path):
    report = parse_report[str(path)]
    assert report["heavy"] == [], (
        f"{path.name} imports {report['heavy']} at parse time: import them in the task"
    )
    assert report["cpu_s"] < 1.0, f"{path.name} took {report['cpu_s']:.2f} s of CPU to parse"


def test_the_parse_probe_sees_a_heavy_import(tmp_path):
    """The same probe flags a DAG file that imports pyarrow at the top: the check can fail."""
    import json
    import subprocess
    import sys

    bad = tmp_path / "heavy_dag.py"
    bad.write_text(BAD_DAG.format(io="import pyarrow"))
    result = subprocess.run(
        [sys.executable, "-c", PARSE_PROBE, json.dumps(HEAVY), str(bad)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    [line] = [line for line in result.stdout.splitlines() if line.startswith("REPORT ")]
    assert "pyarrow" in json.loads(line.removeprefix("REPORT "))[str(bad)]["heavy"]


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
        # A run whose logical date is before a start_date runs no task and reports success. The
        # exception: @continuous needs one (without it every run gets the first run's logical
        # date, and the scheduler never creates a second run); CONTINUOUS_SINCE is long past.
        if type(dag.timetable).__name__ == "ContinuousTimetable":
            assert dag.start_date == CONTINUOUS_SINCE, f"{dag_id}: @continuous needs CONTINUOUS_SINCE"
        else:
            assert dag.start_date is None, (
                f"{dag_id} has a start_date: runs before it would silently do nothing"
            )
        for task in dag.tasks:
            assert task.owner not in (None, "", "airflow"), f"{dag_id}.{task.task_id} has no owner"
            assert task.retries >= 1, f"{dag_id}.{task.task_id} has no retries"


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_a_params_limits_are_stated_in_its_description(path):
    """The trigger form clamps a number outside a Param's minimum/maximum to the limit without a
    word (-5 users became 1): the description must say the limits."""
    from airflow.dag_processing.dagbag import DagBag

    for dag_id, dag in DagBag(dag_folder=str(path)).dags.items():
        for name, param in dag.params.items():
            limits = [param.schema[k] for k in ("minimum", "maximum") if k in param.schema]
            for limit in limits:
                assert f"{limit:,}" in (param.description or ""), (
                    f"{dag_id} Param {name!r}: its description does not state the limit {limit:,}"
                )


# --- DAG files are wiring (issue 17) -------------------------------------------------------------


def _task_doc(task) -> str:
    """The task's doc_md (a @task's docstring); a mapped @task's docstring, on its callable."""
    doc = task.doc_md or task.doc or getattr(getattr(task, "python_callable", None), "__doc__", None)
    return (doc or "").strip()


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_every_task_has_a_one_line_docstring(path):
    from airflow.dag_processing.dagbag import DagBag

    [dag] = DagBag(dag_folder=str(path)).dags.values()
    undocumented = {t.task_id: _task_doc(t) for t in dag.tasks if len(_task_doc(t).splitlines()) != 1}
    assert not undocumented, f"{dag.dag_id}: tasks without a one-line docstring: {undocumented}"


@pytest.mark.parametrize("path", DAG_FILES, ids=lambda p: p.name)
def test_no_dag_pulls_an_xcom_by_task_id(path):
    """Task outputs are passed as arguments (the edge shows in the graph), not pulled by id."""
    source = path.read_text()
    assert "xcom_pull(task_ids" not in source and "xcom_pull(" not in source.replace("def xcom_pull(", ""), (
        f"{path.name} pulls an XCom by task id: pass the task's output instead"
    )


def test_totesys_etl_is_wiring_that_reads_on_one_screen():
    """Task groups for its five stages, the model as two operators naming their SQL files, the
    window's name a task output, the assets and the watermark in two tasks, under 200 lines."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk.definitions.xcom_arg import PlainXComArg

    from conveyor import paths
    from conveyor.totesys import star

    path = DAGS / "totesys_etl.py"
    assert len(path.read_text().splitlines()) < 200
    [dag] = DagBag(dag_folder=str(path)).dags.values()
    groups = {
        group_id: sorted(child for child in group.children)
        for group_id, group in dag.task_group.children.items()
        if hasattr(group, "children")
    }
    assert groups == {
        "extract": ["check_drift", "extract_table", "plan_window", "tables_to_extract", "write_manifest"],
        "land": ["land_table", "prepare_warehouse"],
        "model": ["model_dimensions", "model_facts"],
        "gate": ["check_tables", "plan_checks"],
        "export": ["advance_watermark", "declare_warehouse", "export_star"],
    }
    for task_id, tables in (("model_dimensions", star.DIMENSIONS), ("model_facts", star.FACTS)):
        model = dag.get_task(task_id)
        assert type(model).__name__ == "SQLExecuteQueryOperator"
        # The DagBag has read the files it names (template_searchpath, then each name).
        assert model.sql == [paths.sql_path(f"warehouse/{t}.sql").read_text() for t in tables]
        assert dag.template_searchpath == [str(paths.sql_path())]
        window = model.parameters["window"]
        assert isinstance(window, PlainXComArg)
        assert (window.operator.task_id, window.key) == ("plan_window", "name")
    upstream = {t.task_id: set(t.upstream_task_ids) for t in dag.tasks}
    assert upstream["model_facts"] == {"model_dimensions", "plan_window"}
    assert upstream["check_tables"] == {"plan_checks"}
    assert upstream["plan_checks"] == {"model_facts", "plan_window"}
    assert upstream["declare_warehouse"] == {"export_star", "plan_window"}
    assert upstream["advance_watermark"] == {"declare_warehouse", "plan_window"}


def test_snowflake_setup_runs_its_sql_through_the_provider_operator():
    """The statements are the operator's `sql` (the UI's Rendered Template view shows them)."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.sdk.definitions.xcom_arg import PlainXComArg

    [dag] = DagBag(dag_folder=str(DAGS / "snowflake_setup.py")).dags.values()
    apply_sql = dag.get_task("apply_sql")
    assert type(apply_sql).__name__ == "SQLExecuteQueryOperator"
    assert apply_sql.conn_id == "{{ params.snowflake_conn_id }}"
    assert isinstance(apply_sql.sql, PlainXComArg) and apply_sql.sql.operator.task_id == "render_sql"
