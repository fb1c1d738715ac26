"""`make package`'s artefacts, installed the way MWAA installs them: a clean virtualenv with
Airflow 3.3.1 and MWAA's preinstalled providers plus requirements.txt's packages (nothing from
the dev group), DAGs in $AIRFLOW_HOME/dags, plugins.zip unzipped into $AIRFLOW_HOME/plugins.
Every DAG must import from those files alone."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from conveyor_local import package

ROOT = Path(__file__).resolve().parents[2]
PYPI = "https://pypi.org/simple"
DAG_IDS = sorted(p.stem for p in (ROOT / "dags").glob("*.py"))

# One worker of `make test` runs the whole module: its stack fixture is built once, not per worker.
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("packaging")]


def mwaa_python() -> str:
    """Python 3.12 (MWAA's) when this machine has one, else the interpreter running the tests."""
    candidates = [os.environ.get("CONVEYOR_MWAA_PYTHON"), shutil.which("python3.12")]
    candidates += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.12.*/bin/python3.12")))
    for candidate in filter(None, candidates):
        probe = subprocess.run(
            [candidate, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True
        )
        if probe.returncode == 0 and probe.stdout.strip() == "(3, 12)":
            return candidate
    return sys.executable


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    out = tmp_path_factory.mktemp("build") / "dist"
    built = package.build(out=out)
    return out, built


def test_artefacts_are_complete_and_reproducible(dist, tmp_path):
    out, built = dist
    assert built["dags"] == [f"{d}.py" for d in DAG_IDS]
    assert (out / "dags" / "include" / "config" / "nightly_file_ingestion.json").is_file()
    assert (out / "dags" / "include" / "sql" / "warehouse" / "migrations").is_dir()
    # Only what MWAA runs: the local stack's SQL (the ToteSys source's DDL, the databases it
    # creates) lives in local/sql/ and is not shipped.
    shipped = {
        p.relative_to(out / "dags" / "include").as_posix() for p in (out / "dags" / "include").rglob("*")
    }
    assert not {"sql/totesys", "sql/local"} & shipped
    assert (ROOT / "local" / "sql" / "totesys" / "schema.sql").is_file()
    assert "include/" in (out / "dags" / ".airflowignore").read_text()
    assert (out / "requirements.txt").read_bytes() == (ROOT / "requirements.txt").read_bytes()
    # plugins.zip is the plugins/ folder, file for file (no deny-list): what is there is what runs.
    names = sorted(zipfile.ZipFile(out / "plugins.zip").namelist())
    folder = sorted(
        p.relative_to(ROOT / "plugins").as_posix()
        for p in (ROOT / "plugins").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    )
    assert names == folder
    assert ".airflowignore" in names and "conveyor/__init__.py" in names
    # Same source, same bytes: Terraform uploads no new plugins.zip version, MWAA does not restart.
    again = package.build(out=tmp_path / "dist")
    assert again["plugins_zip"]["sha256"] == built["plugins_zip"]["sha256"]


def test_every_dag_imports_from_the_packaged_files_in_a_clean_mwaa_like_virtualenv(dist, tmp_path):
    out, _ = dist
    python = mwaa_python()
    venv = tmp_path / "venv"
    uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    subprocess.run([uv, "venv", "--quiet", "--python", python, str(venv)], check=True)
    # What MWAA's image has (pyproject's first six dependencies: Airflow and the preinstalled
    # providers) plus requirements.txt without its constraint URL; pinned by the local lock.
    image = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"][:6]
    assert image[0] == "apache-airflow==3.3.1"
    requirements = tmp_path / "requirements-without-constraint.txt"
    requirements.write_text(
        "".join(
            line + "\n"
            for line in (out / "requirements.txt").read_text().splitlines()
            if line.strip() and not line.startswith(("#", "--constraint"))
        )
    )
    subprocess.run(
        [
            uv,
            "pip",
            "install",
            "--quiet",
            "--python",
            str(venv / "bin" / "python"),
            "--index-url",
            PYPI,
            "-c",
            str(ROOT / ".ci" / "constraints.txt"),
            *image,
            "-r",
            str(requirements),
        ],
        check=True,
    )

    home = tmp_path / "airflow"
    shutil.copytree(out / "dags", home / "dags")
    with zipfile.ZipFile(out / "plugins.zip") as zf:
        zf.extractall(home / "plugins")
    probe = """
import importlib.util, json
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder=__import__("os").environ["AIRFLOW__CORE__DAGS_FOLDER"])
import conveyor, conveyor.paths
print("RESULT " + json.dumps({
    "dag_ids": sorted(bag.dag_ids),
    "errors": {k: str(v) for k, v in bag.import_errors.items()},
    "conveyor": conveyor.__file__,
    "include": str(conveyor.paths.include_dir()),
    "dev_tools": [m for m in ("moto", "fakesnow", "pgserver", "pytest") if importlib.util.find_spec(m)],
}))
"""
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(home / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-c", probe],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert result.returncode == 0 and lines, result.stdout[-3000:] + result.stderr[-3000:]
    found = json.loads(lines[-1].removeprefix("RESULT "))
    assert found["errors"] == {}
    assert found["dag_ids"] == DAG_IDS
    assert found["conveyor"] == str(home / "plugins" / "conveyor" / "__init__.py")
    assert found["include"] == str(home / "dags" / "include")
    assert found["dev_tools"] == []
    version = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import sys; print(sys.version)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    print(f"packaged DAGs imported on Python {version.split()[0]}: {', '.join(found['dag_ids'])}")


def test_terraform_uploads_what_package_builds(tmp_path):
    """`make package` writes <checkout>/dist; modules/mwaa uploads artefacts_dir/{plugins.zip,
    requirements.txt,dags/**}, and the root module's artefacts_dir defaults to that folder."""
    import hcl2
    from hcl2 import SerializationOptions

    checkout = tmp_path / "checkout"
    for part in ("dags", "plugins", "include", "terraform"):
        shutil.copytree(
            ROOT / part, checkout / part, ignore=shutil.ignore_patterns("__pycache__", ".terraform")
        )
    shutil.copy(ROOT / "requirements.txt", checkout / "requirements.txt")
    package.build(root=checkout)  # the default output, as `make package` runs it

    options = SerializationOptions(with_comments=False, explicit_blocks=False, strip_string_quotes=True)
    variables = hcl2.loads(
        (checkout / "terraform" / "variables.tf").read_text(), serialization_options=options
    )["variable"]
    [artefacts] = [v["artefacts_dir"] for v in variables if "artefacts_dir" in v]
    uploaded = (checkout / "terraform" / artefacts["default"]).resolve()
    assert uploaded == (checkout / "dist").resolve()
    mwaa = (ROOT / "terraform" / "modules" / "mwaa" / "main.tf").read_text()
    assert 'toset(["plugins.zip", "requirements.txt"])' in mwaa
    assert (
        '"${var.artefacts_dir}/${each.key}"' in mwaa and 'fileset("${var.artefacts_dir}/dags", "**")' in mwaa
    )
    for relative in ("plugins.zip", "requirements.txt"):
        assert (uploaded / relative).is_file()
    assert sorted(p.name for p in (uploaded / "dags").glob("*.py")) == [f"{d}.py" for d in DAG_IDS]
