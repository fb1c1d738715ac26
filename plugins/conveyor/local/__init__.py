"""The no-Docker local stack: moto server, embedded Postgres, Airflow on SQLite."""
