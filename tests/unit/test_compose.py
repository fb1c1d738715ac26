"""docker-compose.yaml, checked without a Docker engine: valid against the Compose schema, every
image pinned, every mounted path present, and the same names, connection ids and versions as the
local stack, requirements.txt and the lock."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from conveyor import resources
from conveyor_local import stack

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())  # merge keys (<<) resolved
SERVICES = COMPOSE["services"]
AIRFLOW_COMPONENTS = {
    "airflow-apiserver": "api-server",
    "airflow-scheduler": "scheduler",
    "airflow-dag-processor": "dag-processor",
    "airflow-triggerer": "triggerer",
}


def _pins(text: str) -> dict[str, str]:
    return dict(re.findall(r"^([A-Za-z0-9_.\-]+)==(\S+)", text, re.M))


LOCK = {k.lower(): v for k, v in _pins((ROOT / ".ci" / "constraints.txt").read_text()).items()}


def _interpolated(value: str) -> str:
    """Compose's `${VAR:-default}` with nothing set in the environment, and `$$` as `$`."""
    return re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", value).replace("$$", "$")


def test_the_file_is_valid_against_the_compose_schema():
    schema = json.loads((ROOT / "tests" / "data" / "compose_spec.json").read_text())
    errors = sorted(jsonschema.Draft201909Validator(schema).iter_errors(COMPOSE), key=str)
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


def test_the_schema_check_catches_a_broken_file():
    schema = json.loads((ROOT / "tests" / "data" / "compose_spec.json").read_text())
    broken = {**COMPOSE, "services": {**SERVICES, "moto": {**SERVICES["moto"], "depends_on": {"x": {}}}}}
    assert list(jsonschema.Draft201909Validator(schema).iter_errors(broken))


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_image_is_pinned_to_a_version(name):
    image = SERVICES[name]["image"]
    _, _, tag = image.partition(":")
    assert tag and tag != "latest" and re.match(r"^\d+\.\d+", tag), f"{name}: {image} is not pinned"


def test_the_images_are_the_versions_the_project_runs():
    assert (
        SERVICES["airflow-apiserver"]["image"] == f"apache/airflow:{LOCK['apache-airflow']}-python3.12"
    )  # MWAA's
    assert SERVICES["moto"]["image"] == f"motoserver/moto:{LOCK['moto']}"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_mounted_path_exists(name):
    for mount in SERVICES[name].get("volumes", []):
        source = mount.split(":")[0]
        if source.startswith(("./", "/")):
            assert (ROOT / source).exists(), f"{name} mounts {source}, which does not exist"
        else:
            assert source in COMPOSE["volumes"], f"{name} mounts an undeclared volume {source}"


def test_the_official_pattern_on_the_local_executor():
    for name, command in AIRFLOW_COMPONENTS.items():
        service = SERVICES[name]
        assert service["command"] == command
        assert "healthcheck" in service, f"{name} has no health check"
        assert service["environment"]["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
        depends = service["depends_on"]
        assert depends["airflow-init"] == {"condition": "service_completed_successfully"}
        assert depends["provision"] == {"condition": "service_completed_successfully"}
        for database in ("metadata-db", "postgres", "moto"):
            assert depends[database] == {"condition": "service_healthy"}
    for name in ("metadata-db", "postgres", "moto"):
        assert "healthcheck" in SERVICES[name]
    init = " ".join(SERVICES["airflow-init"]["command"])
    assert "airflow db migrate" in init and "passwords.json" in init
    metadata = SERVICES["airflow-scheduler"]["environment"]["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert metadata.startswith("postgresql") and "@metadata-db/" in metadata


def test_names_and_connection_ids_are_the_local_stacks():
    env = {k: _interpolated(str(v)) for k, v in SERVICES["airflow-scheduler"]["environment"].items()}
    local = stack.environment(
        {"moto": {"port": 5000}, "postgres": {"dsn": "postgresql://postgres@localhost/postgres"}}
    )
    connections = sorted(k for k in local if k.startswith("AIRFLOW_CONN_"))
    assert connections == sorted(k for k in env if k.startswith("AIRFLOW_CONN_"))
    assert {
        f"AIRFLOW_CONN_{c.upper()}"
        for c in (resources.AWS_CONN_ID, resources.TOTESYS_CONN_ID, resources.WAREHOUSE_CONN_ID)
    } <= set(env)
    assert env[f"AIRFLOW_VAR_{resources.PREFIX_VARIABLE.upper()}"] == resources.DEFAULT_PREFIX
    aws = json.loads(env["AIRFLOW_CONN_AWS_DEFAULT"])
    assert aws["extra"] == {"endpoint_url": "http://moto:5000", "region_name": resources.DEFAULT_REGION}
    assert env["AWS_DEFAULT_REGION"] == resources.DEFAULT_REGION
    for conn_id, database in (
        (resources.TOTESYS_CONN_ID, "totesys"),
        (resources.WAREHOUSE_CONN_ID, "warehouse"),
    ):
        assert env[f"AIRFLOW_CONN_{conn_id.upper()}"].endswith(f"@postgres:5432/{database}")
    assert set(stack.DATABASES) == set(
        re.findall(r"CREATE DATABASE (\w+)", (ROOT / "local/sql/create_databases.sql").read_text())
    )
    assert SERVICES["provision"]["command"][:4] == ["python", "-m", "conveyor_local", "provision"]


def test_compose_installs_what_requirements_txt_adds_to_mwaa():
    extra = SERVICES["airflow-scheduler"]["environment"]["_PIP_ADDITIONAL_REQUIREMENTS"]
    assert _pins(extra.replace(" ", "\n")) == _pins((ROOT / "requirements.txt").read_text())
