"""conveyor_local.botocore_models: one parse of a botocore model per process, the same clients."""

from __future__ import annotations

import boto3
from botocore.loaders import JSONFileLoader

from conveyor_local import botocore_models


def test_sessions_share_one_parse_of_a_service_model_and_build_the_same_client(monkeypatch):
    botocore_models.share()  # tests/conftest.py has already; a second call must not wrap twice
    parsed: list[str] = []
    read = JSONFileLoader._load_file

    def counting(self, full_path, *args, **kwargs):
        parsed.append(full_path)
        return read(self, full_path, *args, **kwargs)

    monkeypatch.setattr(JSONFileLoader, "_load_file", counting)
    # A service no other test uses, so nothing has parsed its model in this process yet.
    clients = [
        boto3.Session(region_name="eu-west-2", aws_access_key_id="x", aws_secret_access_key="x").client(
            "kinesisvideo"
        )
        for _ in range(3)
    ]
    service_model = [path for path in parsed if path.endswith("/kinesisvideo/2017-09-30/service-2.json.gz")]
    # Three Sessions, one read of each file (without share(): three of each).
    assert len(service_model) == 1 and len(parsed) == len(set(parsed)), parsed
    operations = {tuple(c.meta.service_model.operation_names) for c in clients}
    assert len(operations) == 1 and "ListStreams" in next(iter(operations))
