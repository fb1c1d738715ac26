"""Parse each of botocore's JSON model files once per process, not once per AWS hook.

Every Airflow AWS hook builds a new boto3 Session, and botocore caches the models it parses per
Session, so every hook parsed the S3 service model and endpoints.json again: a fifth of a ToteSys
`dag.test()` run's time, where one process runs every task (measured with py-spy). On MWAA each
task is a process of its own and parses them about once anyway, so this is local-only: the tests
(tests/conftest.py) and every Airflow process of the local stack (the airflow_local_settings.py
that `make services` writes) call `share()`. The files are read-only package data, and botocore
already shares one parsed copy between every client of a Session; sharing it between Sessions
changes no behaviour.
"""

from __future__ import annotations


def share() -> None:
    """Make every botocore loader in this process return one parsed copy of each model file."""
    from botocore.loaders import JSONFileLoader

    if getattr(JSONFileLoader.load_file, "shared", False):
        return
    parse = JSONFileLoader.load_file
    parsed: dict = {}

    def load_file(self, file_path):
        if file_path not in parsed:
            parsed[file_path] = parse(self, file_path)
        return parsed[file_path]

    load_file.shared = True
    JSONFileLoader.load_file = load_file
