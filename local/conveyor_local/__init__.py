"""Local-only tooling, never shipped to MWAA: the no-Docker stack (moto server, embedded Postgres,
Airflow), provisioning, `make package`, the demo, the benchmarks and the sample-data generators."""
