"""What the setup docs ask people to create works on MWAA: each Snowflake connection id
docs/snowflake.md names is one the secrets backend looks up (Terraform creates its secret), and the
KMS key lets AWS services use it only on this account's behalf."""

from __future__ import annotations

import json
import re
from pathlib import Path

import hcl2
from hcl2 import SerializationOptions

from conveyor import resources
from conveyor.resources import ResourceNames

ROOT = Path(__file__).resolve().parents[2]
OPTIONS = SerializationOptions(with_comments=False, explicit_blocks=False, strip_string_quotes=True)


def hcl(path: str) -> dict:
    with (ROOT / path).open() as f:
        return hcl2.load(f, serialization_options=OPTIONS)


def test_every_snowflake_connection_the_docs_name_is_one_the_secrets_backend_finds(aws):
    from airflow.providers.amazon.aws.secrets.secrets_manager import SecretsManagerBackend

    named = set(re.findall(r"`(snowflake_[a-z_]+)`", (ROOT / "docs" / "snowflake.md").read_text()))
    named -= {"snowflake_settings", "snowflake_setup", "snowflake_conn_id", "snowflake_health"}
    named -= {n for n in named if n.startswith(("snowflake_iam", "snowflake_external", "snowflake_storage"))}
    assert {"snowflake_default", "snowflake_admin"} <= named, named
    defaults = {
        name: body.get("default")
        for block in hcl("terraform/modules/secrets/variables.tf")["variable"]
        for name, body in block.items()
    }
    for conn_id in named:
        assert conn_id in resources.CONNECTION_IDS, conn_id
        assert conn_id in defaults["secret_connection_ids"], f"Terraform creates no secret for {conn_id}"

    # The backend as MWAA runs it (lookup pattern as modules/secrets builds it), the secret filled
    # as the docs say: the admin connection is found, so snowflake_setup can run as it.
    pattern = "^(" + "|".join(sorted([*defaults["secret_connection_ids"], resources.AWS_CONN_ID])) + ")$"
    names = ResourceNames("conveyor-prod")
    backend = SecretsManagerBackend(
        connections_prefix=names.connections_secret_prefix,
        variables_prefix=names.variables_secret_prefix,
        connections_lookup_pattern=pattern,
        region_name="eu-west-2",
    )
    admin = {
        "conn_type": "snowflake",
        "login": "admin",
        "password": "not-a-secret",
        "extra": {"account": "xy12345", "role": "ACCOUNTADMIN", "warehouse": "CONVEYOR_WH"},
    }
    aws["session"].client("secretsmanager").create_secret(
        Name=names.connection_secret("snowflake_admin"), SecretString=json.dumps(admin)
    )
    found = backend.get_connection("snowflake_admin")
    assert found is not None and found.extra_dejson["role"] == "ACCOUNTADMIN"


def test_services_use_the_key_only_on_behalf_of_this_account():
    """A service principal (s3, sns, cloudwatch) is shared by every AWS account: without
    aws:SourceAccount another account's bucket, topic or alarm could have it use this key."""
    [key] = [r["aws_kms_key"]["conveyor"] for r in hcl("terraform/kms.tf")["resource"] if "aws_kms_key" in r]
    policy = key["policy"]
    statements = re.split(r"\{Sid = ", policy)[1:]
    services = [s for s in statements if "Principal = {Service" in s]
    assert services, policy
    for statement in services:
        sid = statement.split(",")[0]
        scoped = '"aws:SourceAccount" = local.account_id' in statement or (
            "kms:EncryptionContext:aws:logs:arn" in statement and "${local.account_id}" in statement
        )
        assert scoped, f"{sid}: a service principal without a condition naming this account"
