"""The local stack's Airflow settings: its metadata URL (from the Postgres DSN it runs on) and its port."""

from __future__ import annotations

import socket

import pytest
from sqlalchemy.engine import make_url

from conveyor_local import stack


def _url(dsn: str):
    return make_url(stack.airflow_db_url({"postgres": {"dsn": dsn}}))


def test_the_embedded_servers_socket_directory_goes_in_the_query():
    url = _url("postgresql://postgres:@/postgres?host=/tmp/conveyor/pgdata")
    assert (url.host, url.port, url.database) == (None, None, "airflow")
    assert url.query == {"host": "/tmp/conveyor/pgdata"}


def test_a_tcp_server_keeps_its_host_port_password_and_ssl_settings():
    url = _url("postgresql://conveyor:p%40ss@db.example:5433/postgres?sslmode=require&connect_timeout=5")
    assert (url.host, url.port, url.username, url.password, url.database) == (
        "db.example",
        5433,
        "conveyor",
        "p@ss",
        "airflow",
    )
    assert url.query == {"sslmode": "require", "connect_timeout": "5"}


def test_make_airflow_refuses_a_port_already_taken_naming_the_setting_and_starts_nothing(
    tmp_path, monkeypatch, capsys
):
    """Another server on the port: `make airflow` used to report success while its own
    api-server failed to bind and the health check answered from the other one."""
    monkeypatch.setenv("CONVEYOR_LOCAL_DIR", str(tmp_path))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        monkeypatch.setenv("CONVEYOR_AIRFLOW_PORT", str(port))
        with pytest.raises(SystemExit) as refused:
            stack.run_airflow_ui()
    message = str(refused.value)
    assert f"port {port} is already taken" in message
    assert f"CONVEYOR_AIRFLOW_PORT={port + 1} make airflow" in message
    assert list(tmp_path.iterdir()) == [], "nothing started, nothing written"


def test_links_airflow_builds_point_at_the_port_served(tmp_path, monkeypatch):
    """An alert's log_url is built from [api] base_url: it must name the port `make airflow` serves."""
    monkeypatch.setenv("CONVEYOR_LOCAL_DIR", str(tmp_path))
    state = {
        "moto": {"port": 5999},
        "postgres": {"dsn": "postgresql://postgres:@127.0.0.1:5432/postgres"},
        "airflow": {"port": 8093},
    }
    env = stack.environment(state)
    assert env["AIRFLOW__API__BASE_URL"] == "http://127.0.0.1:8093"
    assert env["AIRFLOW__API__PORT"] == "8093"
