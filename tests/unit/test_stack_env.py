"""The local stack's Airflow metadata URL, from the Postgres DSN it runs on."""

from __future__ import annotations

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
