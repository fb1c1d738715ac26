"""Terraform, checked without a terraform binary: every file parses (python-hcl2), every reference
resolves, the structure the deployment depends on is there, the names agree with the names the
DAGs use (plugins/conveyor/resources.py), and checkov finds no failed check."""

from __future__ import annotations

import json
import re
import subprocess
from functools import cache
from pathlib import Path

import hcl2
import pytest
from hcl2 import SerializationOptions

from conveyor import resources
from conveyor.resources import ResourceNames

ROOT = Path(__file__).resolve().parents[2]
TF = ROOT / "terraform"
MODULES = ["storage", "events", "secrets", "mwaa", "snowflake_integration", "monitoring"]
OPTIONS = SerializationOptions(with_comments=False, explicit_blocks=False, strip_string_quotes=True)


# --- Loading ----------------------------------------------------------------------------------


@cache
def load(path: Path) -> dict:
    with path.open() as f:
        return hcl2.load(f, serialization_options=OPTIONS)


@cache
def module(folder: Path) -> dict:
    """Every block of the .tf files in `folder`, merged: {"variable": {name: body}, ...}."""
    merged: dict[str, dict] = {}
    for path in sorted(folder.glob("*.tf")):
        for kind, blocks in load(path).items():
            for block in blocks:
                if kind in ("resource", "data"):
                    for rtype, named in block.items():
                        for name, body in named.items():
                            merged.setdefault(kind, {})[f"{rtype}.{name}"] = body
                elif kind in ("locals", "terraform"):
                    merged.setdefault(kind, {}).update(block)
                else:
                    for name, body in block.items():
                        merged.setdefault(kind, {})[name] = body
    return merged


def root() -> dict:
    return module(TF)


def child(name: str) -> dict:
    return module(TF / "modules" / name)


def resource(mod: dict, address: str) -> dict:
    assert address in mod.get("resource", {}), f"missing resource {address}"
    return mod["resource"][address]


def data(mod: dict, address: str) -> dict:
    assert address in mod.get("data", {}), f"missing data source {address}"
    return mod["data"][address]


def strings(value):
    """Every string inside a parsed value."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from strings(k)
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)


def render(template: str, **values: str) -> str:
    """Substitute `${var.x}` / `${each.key}` style references; fails on anything left over."""
    out = re.sub(r"\$\{([^}]+)\}", lambda m: values[m.group(1).replace(".", "_")], template)
    assert "${" not in out, out
    return out


def list_literal(expression: str) -> list[str]:
    return re.findall(r'"([^"]+)"', expression)


def statements(doc: dict) -> list[dict]:
    return doc["statement"] if isinstance(doc["statement"], list) else [doc["statement"]]


# --- Parsing and references -------------------------------------------------------------------


def all_hcl_files() -> list[Path]:
    return sorted(p for p in TF.rglob("*") if p.suffix in (".tf", ".tfvars", ".tfbackend"))


@pytest.mark.parametrize("path", all_hcl_files(), ids=lambda p: str(p.relative_to(TF)))
def test_every_file_parses(path):
    assert load(path), f"{path} parsed to nothing"


@pytest.mark.parametrize(
    "folder",
    [TF, TF / "bootstrap", *(TF / "modules" / m for m in MODULES)],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_every_reference_resolves(folder):
    """A light `terraform validate`: var./local./module./resource and data references exist."""
    mod = module(folder)
    declared_vars = set(mod.get("variable", {}))
    declared_locals = set(mod.get("locals", {}))
    resources_ = set(mod.get("resource", {}))
    datas = set(mod.get("data", {}))
    problems = []
    for text in strings({k: v for k, v in mod.items() if k != "variable"}):
        if "${" not in text:
            continue
        for name in re.findall(r"\bvar\.(\w+)", text):
            if name not in declared_vars:
                problems.append(f"var.{name}")
        for name in re.findall(r"\blocal\.(\w+)", text):
            if name not in declared_locals:
                problems.append(f"local.{name}")
        for rtype, name in re.findall(r"(?<![\w.])data\.(\w+)\.(\w+)", text):
            if f"{rtype}.{name}" not in datas:
                problems.append(f"data.{rtype}.{name}")
        for rtype, name in re.findall(r"(?<![\w.])(aws_\w+)\.(\w+)", text):
            if f"{rtype}.{name}" not in resources_:
                problems.append(f"{rtype}.{name}")
        for mod_name, output in re.findall(r"\bmodule\.(\w+)\.(\w+)", text):
            called = mod.get("module", {}).get(mod_name)
            if called is None:
                problems.append(f"module.{mod_name}")
                continue
            outputs = module((folder / called["source"]).resolve()).get("output", {})
            if output not in outputs:
                problems.append(f"module.{mod_name}.{output}")
    assert not problems, f"unresolved references in {folder}: {sorted(set(problems))}"


def test_module_calls_match_module_variables():
    calls = root()["module"]
    assert set(calls) == set(MODULES)
    for name, call in calls.items():
        assert call["source"] == f"./modules/{name}"
        variables = child(name)["variable"]
        passed = set(call) - {"source"}
        assert passed <= set(variables), f"module {name} has no variables {passed - set(variables)}"
        required = {v for v, body in variables.items() if "default" not in body}
        assert required <= passed, f"module {name} is missing required {required - passed}"


def test_every_variable_and_output_is_described():
    for folder in [TF, *(TF / "modules" / m for m in MODULES)]:
        mod = module(folder)
        for kind in ("variable", "output"):
            for name, body in mod.get(kind, {}).items():
                assert body.get("description"), f"{folder.name}: {kind} {name} has no description"
        for name, body in mod.get("variable", {}).items():
            assert "type" in body, f"{folder.name}: variable {name} has no type"


# --- Layout: versions, backend, environments --------------------------------------------------


def test_versions_pin_terraform_and_the_aws_provider():
    terraform = load(TF / "versions.tf")["terraform"][0]
    assert terraform["required_version"].startswith(">= 1.10")  # S3-native locking
    aws = terraform["required_providers"][0]["aws"]
    assert aws["source"] == "hashicorp/aws"
    assert re.fullmatch(r"~> \d+\.\d+", aws["version"])
    # Partial configuration: bucket, key and region come from environments/<env>.s3.tfbackend.
    assert terraform["backend"] == [{"s3": {}}]


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_environment_files(env):
    backend = load(TF / "environments" / f"{env}.s3.tfbackend")
    assert backend["use_lockfile"] is True and backend["encrypt"] is True
    assert backend["key"] == f"conveyor/{env}/terraform.tfstate"
    tfvars = load(TF / "environments" / f"{env}.tfvars")
    assert tfvars["environment"] == env
    unknown = set(tfvars) - set(root()["variable"])
    assert not unknown, f"{env}.tfvars sets undeclared variables {unknown}"
    # Every conveyor option is one the DAGs read.
    dag_sources = "".join(p.read_text() for p in (ROOT / "dags").glob("*.py"))
    for option in tfvars.get("conveyor_options", {}):
        assert f'"conveyor", "{option}"' in dag_sources, f"no DAG reads conveyor.{option}"


def test_environments_differ_where_they_should():
    dev = load(TF / "environments" / "dev.tfvars")
    prod = load(TF / "environments" / "prod.tfvars")
    assert dev["mwaa_max_workers"] < prod["mwaa_max_workers"]
    assert "force_destroy_buckets" not in prod and "single_nat_gateway" not in prod


def test_bootstrap_state_bucket_is_protected():
    boot = module(TF / "bootstrap")
    bucket = resource(boot, "aws_s3_bucket.state")
    assert bucket["lifecycle"][0]["prevent_destroy"] is True
    assert (
        resource(boot, "aws_s3_bucket_versioning.state")["versioning_configuration"][0]["status"] == "Enabled"
    )
    sse = resource(boot, "aws_s3_bucket_server_side_encryption_configuration.state")
    assert "aws:kms" in json.dumps(sse)


# --- Names agree with plugins/conveyor/resources.py -------------------------------------------


def name_prefix_for(env: str) -> str:
    expression = root()["locals"]["name_prefix"]
    assert expression == '${coalesce(var.name_prefix, "conveyor-${var.environment}")}'
    return f"conveyor-{env}"


def test_bucket_names_agree():
    access = root()["locals"]["bucket_access"]
    assert set(access) == set(resources.BUCKETS), "Terraform's buckets differ from resources.BUCKETS"
    assert root()["module"]["storage"]["bucket_kinds"] == "${keys(local.bucket_access)}"
    template = resource(child("storage"), "aws_s3_bucket.this")["bucket"]
    names = ResourceNames(name_prefix_for("prod"))
    for kind in resources.BUCKETS:
        assert render(template, var_name_prefix=names.prefix, each_key=kind) == names.bucket(kind)


def test_topic_and_queue_names_agree():
    events = child("events")
    assert root()["locals"]["topic_kinds"] == list(resources.TOPICS)
    names = ResourceNames(name_prefix_for("dev"))
    topic = resource(events, "aws_sns_topic.this")
    assert topic["for_each"] == "${toset(var.topic_kinds)}"
    for kind in resources.TOPICS:
        assert render(topic["name"], var_name_prefix=names.prefix, each_key=kind) == names.topic(kind)
    assert list(resources.QUEUES) == ["raw-events"]
    queue = resource(events, "aws_sqs_queue.raw_events")
    dlq = resource(events, "aws_sqs_queue.raw_events_dlq")
    assert render(queue["name"], var_name_prefix=names.prefix) == names.queue("raw-events")
    assert render(dlq["name"], var_name_prefix=names.prefix) == names.dead_letter_queue("raw-events")


def test_bucket_notifications_agree():
    notifications = root()["locals"]["bucket_notifications"]
    expected = {
        bucket: {"topic": topic, "prefixes": list(prefixes)}
        for bucket, (topic, prefixes) in resources.BUCKET_NOTIFICATIONS.items()
    }
    assert notifications == expected
    # resources.QUEUES: the raw-events queue subscribes to the raw-events topic.
    subscription = resource(child("events"), "aws_sns_topic_subscription.raw_events_queue")
    assert subscription["topic_arn"] == '${aws_sns_topic.this["raw-events"].arn}'
    assert subscription["endpoint"] == "${aws_sqs_queue.raw_events.arn}"


def test_secret_names_agree():
    secrets = child("secrets")
    names = ResourceNames(name_prefix_for("prod"))
    assert secrets["locals"]["connections_prefix"] == "${var.name_prefix}/connections"
    assert secrets["locals"]["variables_prefix"] == "${var.name_prefix}/variables"
    assert (
        render("${var.name_prefix}/connections", var_name_prefix=names.prefix)
        == names.connections_secret_prefix
    )
    assert (
        render("${var.name_prefix}/variables", var_name_prefix=names.prefix) == names.variables_secret_prefix
    )
    assert secrets["variable"]["secret_connection_ids"]["default"] == list(resources.SECRET_CONNECTION_IDS)
    template = resource(secrets, "aws_secretsmanager_secret.connection")["name"]
    for conn_id in resources.SECRET_CONNECTION_IDS:
        rendered = render(
            template, local_connections_prefix=names.connections_secret_prefix, each_key=conn_id
        )
        assert rendered == names.connection_secret(conn_id)
    aws_default = resource(secrets, "aws_secretsmanager_secret.aws_default")["name"]
    assert render(
        aws_default, local_connections_prefix=names.connections_secret_prefix
    ) == names.connection_secret(resources.AWS_CONN_ID)
    # Every Variable the DAGs read has a secret: the plain ones from the root, the rest optional.
    plain = set(root()["module"]["secrets"]["plain_variables"])
    optional = set(secrets["variable"]["optional_variables"]["default"])
    assert plain | optional == set(resources.VARIABLES)
    assert plain == {
        resources.PREFIX_VARIABLE,
        resources.NOTIFICATIONS_TOPIC_VARIABLE,
        resources.SNOWFLAKE_VARIABLE,
    }


def test_secrets_backend_finds_the_secrets_terraform_creates(aws):
    """Airflow's SecretsManagerBackend, configured as the MWAA module configures it, reads a
    connection and a Variable stored under the names Terraform creates (moto Secrets Manager)."""
    from airflow.providers.amazon.aws.secrets.secrets_manager import SecretsManagerBackend

    names = ResourceNames("conveyor-prod")
    kwargs = child("mwaa")["locals"]["secrets_backend_kwargs"]
    assert kwargs == {
        "connections_prefix": "${var.secrets_connections_prefix}",
        "variables_prefix": "${var.secrets_variables_prefix}",
        "connections_lookup_pattern": "${var.secrets_lookup_patterns.connections}",
        "variables_lookup_pattern": "${var.secrets_lookup_patterns.variables}",
    }
    assert root()["module"]["mwaa"]["secrets_connections_prefix"] == "${module.secrets.connections_prefix}"
    # The lookup patterns as modules/secrets builds them (join of the sorted ids).
    conn_pattern = "^(" + "|".join(sorted([*resources.SECRET_CONNECTION_IDS, resources.AWS_CONN_ID])) + ")$"
    var_pattern = "^(" + "|".join(sorted(resources.VARIABLES)) + ")$"
    backend = SecretsManagerBackend(
        connections_prefix=names.connections_secret_prefix,
        variables_prefix=names.variables_secret_prefix,
        connections_lookup_pattern=conn_pattern,
        variables_lookup_pattern=var_pattern,
        region_name=resources.DEFAULT_REGION,
    )
    client = aws["session"].client("secretsmanager")
    # aws_default exactly as modules/secrets writes it; totesys_db as the README tells people to.
    client.create_secret(
        Name=names.connection_secret("aws_default"),
        SecretString=json.dumps({"conn_type": "aws", "extra": {"region_name": "eu-west-2"}}),
    )
    client.create_secret(
        Name=names.connection_secret("totesys_db"),
        SecretString=json.dumps(
            {
                "conn_type": "postgres",
                "host": "totesys.example.com",
                "port": 5432,
                "login": "etl",
                "password": "s3cr3t",
                "schema": "totesys",
            }
        ),
    )
    client.create_secret(Name=names.connection_secret("warehouse_db"))  # created empty, not yet filled
    client.create_secret(Name=names.variable_secret(resources.PREFIX_VARIABLE), SecretString="conveyor-prod")

    aws_default = backend.get_connection("aws_default")
    assert aws_default.conn_type == "aws" and aws_default.extra_dejson == {"region_name": "eu-west-2"}
    totesys = backend.get_connection("totesys_db")
    assert (totesys.host, totesys.port, totesys.login, totesys.password, totesys.schema) == (
        "totesys.example.com",
        5432,
        "etl",
        "s3cr3t",
        "totesys",
    )
    assert backend.get_connection("warehouse_db") is None  # empty secret: not found, not a crash
    assert backend.get_variable(resources.PREFIX_VARIABLE) == "conveyor-prod"
    assert backend.get_variable("some_other_variable") is None  # outside the pattern: not looked up


# --- Storage ----------------------------------------------------------------------------------


def test_every_bucket_is_encrypted_versioned_private_owner_enforced_and_tls_only():
    storage = child("storage")
    for suffix in ("this", "access_logs"):
        versioning = resource(storage, f"aws_s3_bucket_versioning.{suffix}")
        assert versioning["versioning_configuration"][0]["status"] == "Enabled"
        block = resource(storage, f"aws_s3_bucket_public_access_block.{suffix}")
        assert all(
            block[k] is True
            for k in (
                "block_public_acls",
                "block_public_policy",
                "ignore_public_acls",
                "restrict_public_buckets",
            )
        )
        ownership = resource(storage, f"aws_s3_bucket_ownership_controls.{suffix}")
        assert ownership["rule"][0]["object_ownership"] == "BucketOwnerEnforced"
        assert f"aws_s3_bucket_lifecycle_configuration.{suffix}" in storage["resource"]
    sse = resource(storage, "aws_s3_bucket_server_side_encryption_configuration.this")["rule"][0]
    default = sse["apply_server_side_encryption_by_default"][0]
    assert default == {"sse_algorithm": "aws:kms", "kms_master_key_id": "${var.kms_key_arn}"}
    assert (
        resource(storage, "aws_s3_bucket_logging.this")["target_bucket"] == "${aws_s3_bucket.access_logs.id}"
    )
    for doc in ("tls_only", "access_logs"):
        deny = [
            s
            for s in statements(data(storage, f"aws_iam_policy_document.{doc}"))
            if s.get("effect") == "Deny"
        ]
        assert deny and deny[0]["condition"][0] == {
            "test": "Bool",
            "variable": "aws:SecureTransport",
            "values": ["false"],
        }
    # Every per-bucket resource covers every bucket.
    for address, body in storage["resource"].items():
        if address.endswith(".this"):
            assert body["for_each"] == "${local.buckets}", address


def test_transient_buckets_expire_and_everything_aborts_stale_uploads():
    lifecycle = resource(child("storage"), "aws_s3_bucket_lifecycle_configuration.this")
    base = lifecycle["rule"][0]
    assert base["abort_incomplete_multipart_upload"][0]["days_after_initiation"] == (
        "${var.abort_incomplete_upload_days}"
    )
    assert child("storage")["variable"]["abort_incomplete_upload_days"]["default"] == 7
    assert "noncurrent_version_expiration" in base
    expire = root()["variable"]["expire_after_days"]["default"]
    assert {"inbound", "stage"} <= set(expire) and set(expire) <= set(resources.BUCKETS)
    # Data that is the only copy is never expired.
    assert not {"source", "curated", "archive", "processed", "code"} & set(expire)


def rules_by_id(lifecycle: dict) -> dict:
    """Lifecycle rules by id, the dynamic ones (`dynamic "rule"`) by their content's id."""
    rules = {r["id"]: r for r in lifecycle.get("rule", [])}
    for dynamic in lifecycle.get("dynamic", []):
        content = dynamic["rule"]["content"][0]
        rules[content["id"]] = {**content, "for_each": dynamic["rule"]["for_each"]}
    return rules


def test_lifecycle_keeps_what_cannot_be_re_extracted_and_moves_kept_data_to_infrequent_access():
    storage, top = child("storage"), root()
    lifecycle = resource(storage, "aws_s3_bucket_lifecycle_configuration.this")
    rules = rules_by_id(lifecycle)
    # Every bucket: stale multipart uploads (a killed extract or export) aborted; old versions expire.
    base = rules["abort-incomplete-uploads-and-expire-old-versions"]
    assert base["filter"] == [{}]
    assert base["abort_incomplete_multipart_upload"][0] == {
        "days_after_initiation": "${var.abort_incomplete_upload_days}"
    }
    assert base["noncurrent_version_expiration"][0] == {
        "noncurrent_days": "${var.noncurrent_version_expire_days}"
    }
    logs = resource(storage, "aws_s3_bucket_lifecycle_configuration.access_logs")["rule"][0]
    assert "abort_incomplete_multipart_upload" in logs and "noncurrent_version_expiration" in logs
    # Kept data moves to Standard-IA, per kind, never small objects (IA bills 128 KiB minimum).
    ia = rules["transition-to-standard-ia"]
    assert ia["transition"][0] == {"days": "${rule.value}", "storage_class": "STANDARD_IA"}
    assert "var.infrequent_access_after_days" in ia["for_each"]
    assert lifecycle["transition_default_minimum_object_size"] == "all_storage_classes_128K"
    assert top["module"]["storage"]["infrequent_access_after_days"] == "${var.infrequent_access_after_days}"
    # A transition on or after expiry is refused by S3: a precondition says so at plan time.
    precondition = lifecycle["lifecycle"][0]["precondition"][0]
    assert "var.infrequent_access_after_days" in precondition["condition"]
    assert "var.expire_after_days" in precondition["condition"]

    expire = top["variable"]["expire_after_days"]["default"]
    to_ia = top["variable"]["infrequent_access_after_days"]["default"]
    # The ingestion and processed buckets grow with every window: both move to IA...
    assert {"ingestion", "processed"} <= set(to_ia) <= set(resources.BUCKETS)
    assert all(days >= 30 for days in to_ia.values())  # S3's minimum for STANDARD_IA
    # ...and IA bills 30 days minimum: a kind that also expires stays there at least that long.
    assert all(expire[kind] - days >= 30 for kind, days in to_ia.items() if kind in expire)
    # The ingestion bucket is not reproducible: the source keeps only each row's current version
    # (a window re-extracted later lacks the versions overwritten since), and it holds the
    # scheduled watermark, which a paused deployment must find again.
    from conveyor.totesys.windows import watermark_key

    assert watermark_key("totesys_etl").startswith("_state/")
    assert "ingestion" not in expire
    # The module's own validation rejects a transition S3 would refuse.
    validation = storage["variable"]["infrequent_access_after_days"]["validation"][0]
    assert ">= 30" in validation["condition"]


# --- Events -----------------------------------------------------------------------------------


def test_bucket_event_topics_only_accept_their_bucket_in_this_account():
    doc = data(child("events"), "aws_iam_policy_document.bucket_events_topic")
    publish = next(s for s in statements(doc) if s.get("sid") == "BucketPublishesObjectCreated")
    assert publish["principals"][0] == {"type": "Service", "identifiers": ["s3.amazonaws.com"]}
    conditions = {c["variable"]: c for c in publish["condition"]}
    assert conditions["aws:SourceArn"]["values"] == ["${var.buckets[each.value].arn}"]
    assert conditions["aws:SourceAccount"]["values"] == ["${local.account_id}"]


def test_queue_only_accepts_its_topic_and_has_a_dead_letter_queue():
    events = child("events")
    doc = data(events, "aws_iam_policy_document.raw_events_queue")
    send = next(s for s in statements(doc) if s.get("sid") == "RawEventsTopicSends")
    assert send["condition"][0] == {
        "test": "ArnEquals",
        "variable": "aws:SourceArn",
        "values": ['${aws_sns_topic.this["raw-events"].arn}'],
    }
    queue = resource(events, "aws_sqs_queue.raw_events")
    assert "deadLetterTargetArn = aws_sqs_queue.raw_events_dlq.arn" in queue["redrive_policy"]
    assert "maxReceiveCount = var.max_receive_count" in queue["redrive_policy"]
    for q in ("raw_events", "raw_events_dlq"):
        assert resource(events, f"aws_sqs_queue.{q}")["kms_master_key_id"] == "${var.kms_key_arn}"
    assert resource(events, "aws_sns_topic.this")["kms_master_key_id"] == "${var.kms_key_arn}"
    allow = resource(events, "aws_sqs_queue_redrive_allow_policy.raw_events_dlq")["redrive_allow_policy"]
    assert "sourceQueueArns = [aws_sqs_queue.raw_events.arn]" in allow


def test_events_wait_14_days_and_an_alarm_fires_hours_before_any_expires(aws):
    """SQS deletes a message when its retention runs out, and that does not go to the DLQ: both
    queues keep messages for the maximum, and an alarm on the oldest message's age fires long
    before (a paused or failing s3_event_copy is noticed, and nothing expires). The local stack's
    queues are made the same way."""
    events = child("events")
    variables = events["variable"]
    assert resources.QUEUE_RETENTION_S == 1209600  # 14 days, the SQS maximum
    for queue, variable in (
        ("raw_events", "message_retention_seconds"),
        ("raw_events_dlq", "dead_letter_retention_seconds"),
    ):
        assert (
            resource(events, f"aws_sqs_queue.{queue}")["message_retention_seconds"] == f"${{var.{variable}}}"
        )
        assert variables[variable]["default"] == resources.QUEUE_RETENTION_S
        assert variable not in root()["module"]["events"], "the root keeps the module's 14 days"

    alarm = resource(events, "aws_cloudwatch_metric_alarm.oldest_message")
    assert (alarm["namespace"], alarm["metric_name"]) == ("AWS/SQS", "ApproximateAgeOfOldestMessage")
    assert alarm["dimensions"] == {"QueueName": "${aws_sqs_queue.raw_events.name}"}
    assert (alarm["statistic"], alarm["comparison_operator"]) == ("Maximum", "GreaterThanThreshold")
    assert alarm["threshold"] == "${var.oldest_message_alarm_seconds}"
    assert alarm["alarm_actions"] == ['${aws_sns_topic.this["notifications"].arn}']
    threshold = variables["oldest_message_alarm_seconds"]["default"]
    # Well under the retention, and above a failing message's own way to the DLQ (5 x 15 min).
    assert threshold > resources.MAX_RECEIVE_COUNT * resources.QUEUE_VISIBILITY_TIMEOUT_S
    assert threshold + alarm["period"] * alarm["evaluation_periods"] <= resources.QUEUE_RETENTION_S / 50

    sqs = aws["session"].client("sqs")
    for url in (aws["queues"]["raw-events"], aws["dead_letter_queues"]["raw-events"]):
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["MessageRetentionPeriod"])
        assert attributes["Attributes"]["MessageRetentionPeriod"] == str(resources.QUEUE_RETENTION_S)


def test_visibility_timeout_outlasts_the_copy_task():
    """The queue's visibility timeout (Terraform) is the hold copy_events puts on its batch before
    copying; the task, as Airflow parsed it, is stopped well before the hold ends and stops
    starting copies before that. (The hold itself is tested on moto in test_s3_event_copy.)"""
    from airflow.dag_processing.dagbag import DagBag

    call = root()["module"]["events"]
    assert call["visibility_timeout_seconds"] == resources.QUEUE_VISIBILITY_TIMEOUT_S
    assert call["max_receive_count"] == resources.MAX_RECEIVE_COUNT
    assert (
        child("events")["variable"]["visibility_timeout_seconds"]["default"]
        == resources.QUEUE_VISIBILITY_TIMEOUT_S
    )
    path = ROOT / "dags" / "s3_event_copy.py"
    dag = DagBag(dag_folder=str(path)).get_dag("s3_event_copy")
    task_limit = dag.get_task("copy_events").execution_timeout.total_seconds()
    from s3_event_copy import BUDGET  # dags/ is on the tests' path

    # Receiving stops first, then starting copies, then the task, then the hold.
    assert BUDGET.seconds < BUDGET.copy_seconds < task_limit <= resources.QUEUE_VISIBILITY_TIMEOUT_S - 120


def test_bucket_notifications_and_email_subscriptions():
    events = child("events")
    notification = resource(events, "aws_s3_bucket_notification.this")
    assert notification["for_each"] == "${var.bucket_notifications}"
    topic = notification["dynamic"][0]["topic"]
    assert topic["for_each"] == "${each.value.prefixes}"
    assert topic["content"][0]["events"] == ["s3:ObjectCreated:*"]
    email = resource(events, "aws_sns_topic_subscription.email")
    assert email["protocol"] == "email" and email["for_each"] == "${toset(var.notification_emails)}"
    assert root()["module"]["events"]["notification_emails"] == "${var.notification_emails}"


# --- Secrets ----------------------------------------------------------------------------------


def test_no_credential_value_is_written_by_terraform():
    secrets = child("secrets")
    versions = {
        a: b for a, b in secrets["resource"].items() if a.startswith("aws_secretsmanager_secret_version.")
    }
    # Only aws_default (region only) and the plain Variables get a value from Terraform.
    assert set(versions) == {
        "aws_secretsmanager_secret_version.aws_default",
        "aws_secretsmanager_secret_version.variable",
    }
    assert versions["aws_secretsmanager_secret_version.variable"]["for_each"] == "${var.plain_variables}"
    assert "password" not in json.dumps(versions)
    for path in TF.rglob("*"):
        if path.is_file():
            assert not re.search(r"(?i)\"?password\"?\s*=", path.read_text()), f"a password in {path}"


# --- MWAA -------------------------------------------------------------------------------------


def test_mwaa_environment():
    mwaa = child("mwaa")
    env = resource(mwaa, "aws_mwaa_environment.this")
    assert root()["variable"]["airflow_version"]["default"] == "3.3.1"
    assert root()["module"]["mwaa"]["airflow_version"] == "${var.airflow_version}"
    assert root()["variable"]["mwaa_webserver_access_mode"]["default"] == "PRIVATE_ONLY"
    for knob in ("environment_class", "min_workers", "max_workers", "schedulers"):
        assert env[knob] == f"${{var.{knob}}}"
        assert root()["module"]["mwaa"][knob].startswith("${var.mwaa_")
    logging = env["logging_configuration"][0]
    kinds = {"dag_processing_logs", "scheduler_logs", "task_logs", "webserver_logs", "worker_logs"}
    assert set(logging) == kinds
    assert all(logging[k][0]["enabled"] is True for k in kinds)
    # Artefacts from the source bucket, with the uploaded object versions wired in.
    assert env["source_bucket_arn"] == "${var.source_bucket.arn}"
    assert env["plugins_s3_object_version"] == '${aws_s3_object.artefact["plugins.zip"].version_id}'
    assert env["requirements_s3_object_version"] == '${aws_s3_object.artefact["requirements.txt"].version_id}'
    artefact = resource(mwaa, "aws_s3_object.artefact")
    assert artefact["for_each"] == '${toset(["plugins.zip", "requirements.txt"])}'
    assert artefact["source"] == "${var.artefacts_dir}/${each.key}" and artefact["key"] == "${each.key}"
    assert env["dag_s3_path"] == "dags/"
    assert root()["module"]["mwaa"]["source_bucket"] == '${module.storage.buckets["code"]}'
    assert env["network_configuration"][0]["subnet_ids"] == "${local.private_subnet_ids}"


def test_mwaa_configuration_options():
    mwaa = child("mwaa")
    base = mwaa["locals"]["base_configuration_options"]
    assert (
        base["secrets.backend"]
        == "airflow.providers.amazon.aws.secrets.secrets_manager.SecretsManagerBackend"
    )
    assert base["operators.default_deferrable"] == "True"
    merged = mwaa["locals"]["airflow_configuration_options"]
    assert "jsonencode(local.secrets_backend_kwargs)" in merged and '"conveyor.${key}"' in merged
    # MWAA's key pattern.
    for key in [*base, "secrets.backend_kwargs", "conveyor.totesys_cron"]:
        assert re.fullmatch(r"[a-z]+([a-z0-9._]*[a-z0-9_]+)?", key), key


def test_mwaa_worker_sizing_is_what_the_local_celery_workers_run():
    """Fixed task slots per worker (MWAA's class default unless set) and core.parallelism = max
    workers x slots / schedulers (one local scheduler: workers x slots): the shape `CONVEYOR_EXECUTOR=celery make airflow` runs the scheduler tests
    with (conveyor_local.stack: CELERY_WORKERS x CELERY_WORKER_CONCURRENCY, like dev.tfvars'
    mw1.small with at most 2 workers)."""
    from conveyor_local import stack

    mwaa = child("mwaa")
    locals_ = mwaa["locals"]
    classes = mwaa["variable"]["environment_class"]["validation"][0]["condition"]
    assert set(locals_["class_worker_concurrency"]) == set(re.findall(r"mw1\.[a-z0-9]+", classes))
    assert locals_["class_worker_concurrency"]["mw1.small"] == 5
    assert "class_worker_concurrency[var.environment_class]" in locals_["worker_concurrency"]
    assert "var.worker_concurrency" in locals_["worker_concurrency"]
    sizing = locals_["sizing_configuration_options"]
    assert sizing["celery.worker_autoscale"] == "${local.worker_concurrency},${local.worker_concurrency}"
    # Per scheduler (Airflow's [core] parallelism): the schedulers together fill the workers' slots.
    assert sizing["core.parallelism"] == (
        "${tostring(ceil(var.max_workers * local.worker_concurrency / var.schedulers))}"
    )
    assert "local.sizing_configuration_options" in locals_["airflow_configuration_options"]
    assert root()["module"]["mwaa"]["worker_concurrency"] == "${var.mwaa_worker_concurrency}"
    dev = load(TF / "environments" / "dev.tfvars")
    assert dev["mwaa_environment_class"] == "mw1.small" and dev.get("mwaa_worker_concurrency") is None
    assert dev["mwaa_max_workers"] == stack.CELERY_WORKERS and stack.CELERY_WORKER_CONCURRENCY == 5
    celery = stack.celery_environment({"redis": {"port": 1}, "postgres": {"dsn": "postgresql://u@h/db"}})
    assert celery["AIRFLOW__CORE__PARALLELISM"] == str(dev["mwaa_max_workers"] * 5)


def test_execution_role_grants_exactly_what_the_dags_use():
    mwaa = child("mwaa")
    doc = statements(data(mwaa, "aws_iam_policy_document.execution"))
    by_sid = {s["sid"]: s for s in doc}
    # "*" only where AWS has no resource-level permissions.
    star = {s["sid"] for s in doc if "*" in s.get("resources", [])}
    assert star == {"CheckAccountPublicAccessBlock", "DescribeLogGroups", "PutEnvironmentMetrics"}
    for sid in star:
        assert len(by_sid[sid]["actions"]) == 1
    for s in doc:
        assert not any(
            a in ("*", "s3:*", "sqs:*", "sns:*", "kms:*", "secretsmanager:*") for a in s["actions"]
        ), s
    assert by_sid["PublishRunSummaries"] == {
        "sid": "PublishRunSummaries",
        "actions": ["sns:Publish"],
        "resources": "${var.publish_topic_arns}",
    }
    assert by_sid["ConsumeEventQueues"]["resources"] == "${var.queue_arns}"
    assert "sqs:SendMessage" not in by_sid["ConsumeEventQueues"]["actions"]
    assert by_sid["ReadAirflowSecrets"]["actions"] == [
        "secretsmanager:GetSecretValue",
        "secretsmanager:DescribeSecret",
    ]
    call = root()["module"]["mwaa"]
    assert call["queue_arns"] == ['${module.events.queue_arns["raw-events"]}']
    assert call["publish_topic_arns"] == ['${module.events.topic_arns["notifications"]}']
    # Delete only where a DAG deletes: inbound (after staging), ingestion and processed (rewrites).
    access = root()["locals"]["bucket_access"]
    assert {k for k, v in access.items() if v == "write-delete"} == {"inbound", "ingestion", "processed"}
    assert {k for k, v in access.items() if v == "read"} == {"source", "code"}
    actions = mwaa["locals"]["object_actions"]
    assert "s3:DeleteObject" not in actions["write"] and "s3:PutObject" not in actions["read"]
    assert "s3:DeleteObject" in actions["write-delete"]
    # inbound_to_stage works on exact versions: it lists them, copies one, deletes that one.
    assert {"s3:GetObjectVersion", "s3:DeleteObjectVersion"} <= set(actions["write-delete"])
    assert not {"s3:GetObjectVersion", "s3:DeleteObjectVersion"} & set(actions["write"] + actions["read"])
    assert {"s3:ListBucketVersions", "s3:GetBucketVersioning"} <= set(by_sid["ListDataBuckets"]["actions"])
    # s3_event_copy holds and releases its batch on the queue, and reads its redrive policy.
    assert {"sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"} <= set(
        by_sid["ConsumeEventQueues"]["actions"]
    )
    # It copies the exact raw object version each event names: on raw's events/ only.
    assert by_sid["ReadEventObjectVersions"] == {
        "sid": "ReadEventObjectVersions",
        "actions": ["s3:GetObjectVersion", "s3:GetObjectVersionTagging"],
        "resources": ['${var.bucket_access["raw"].arn}/' + resources.EVENTS_PREFIX + "*"],
    }


def test_failed_tasks_alarm_notifies_the_topic():
    alarm = resource(child("mwaa"), "aws_cloudwatch_metric_alarm.failed_tasks")
    assert (alarm["namespace"], alarm["metric_name"]) == ("AmazonMWAA", "TaskInstanceFailures")
    # MWAA's TaskInstanceFailures carries DAG=All and Task=All (its metric table): with Function
    # the alarm watched a series that does not exist and could never fire.
    assert alarm["dimensions"] == {"Environment": "${var.name}", "DAG": "All", "Task": "All"}
    assert alarm["alarm_actions"] == ["${var.alarm_topic_arn}"]
    assert root()["module"]["mwaa"]["alarm_topic_arn"] == '${module.events.topic_arns["notifications"]}'


# --- The operator's dashboard (modules/monitoring) ---------------------------------------------

DASHBOARD_VALUES = {
    "region": "eu-west-2",
    "environment": "conveyor-dev",
    "queue": "conveyor-dev-raw-events",
    "dead_letter_queue": "conveyor-dev-raw-events-dlq",
    "oldest_message_seconds": "10800",
    "oldest_message_hours": "3",
    "dead_letters_alarm_arn": "arn:dead-letters",
    "oldest_message_alarm_arn": "arn:oldest-message",
    "failed_tasks_alarm_arn": "arn:failed-tasks",
    "scheduler_heartbeat_alarm_arn": "arn:scheduler-heartbeat",
}


def dashboard() -> dict:
    """The dashboard body as CloudWatch receives it: the template rendered with the values the
    module passes (the test fails on a placeholder the module does not pass)."""
    call = resource(child("monitoring"), "aws_cloudwatch_dashboard.this")["dashboard_body"]
    passed = set(re.findall(r"(\w+)\s*=", call.split("{", 1)[1]))
    assert passed == set(DASHBOARD_VALUES), "the template's placeholders are what the module passes"
    text = (TF / "modules" / "monitoring" / "dashboard.json.tftpl").read_text()
    return json.loads(render(text, **DASHBOARD_VALUES))


def tiles(body: dict) -> dict[str, dict]:
    return {w["properties"]["title"]: w for w in body["widgets"] if "title" in w["properties"]}


def metric_lines(widget: dict) -> list[tuple[str, str, dict, dict]]:
    """(namespace, metric, dimensions, options) of each line of a metric tile."""
    lines = []
    for line in widget["properties"]["metrics"]:
        options = line[-1] if isinstance(line[-1], dict) else {}
        fields = line[:-1] if options else line
        lines.append((fields[0], fields[1], dict(zip(fields[2::2], fields[3::2], strict=True)), options))
    return lines


def dag_ids() -> set[str]:
    return {
        re.search(r'^DAG_ID = "(\w+)"', p.read_text(), re.M).group(1) for p in (ROOT / "dags").glob("*.py")
    }


def test_the_dashboard_has_a_runs_tile_per_pipeline_on_mwaas_per_dag_metrics():
    body, dags = dashboard(), dag_ids()
    runs = {t: w for t, w in tiles(body).items() if t.endswith(": runs")}
    assert {t.removesuffix(": runs") for t in runs} == dags, "one tile per DAG in dags/, no other"
    for title, widget in runs.items():
        dag = title.removesuffix(": runs")
        lines = metric_lines(widget)
        assert [(ns, m, o["label"], o["stat"]) for ns, m, _, o in lines] == [
            ("AmazonMWAA", "DAGDurationSuccess", "succeeded", "SampleCount"),
            ("AmazonMWAA", "DAGDurationFailed", "failed", "SampleCount"),
        ]
        assert all(d == {"DAG": dag, "Environment": "conveyor-dev"} for _, _, d, _ in lines)
        assert widget["properties"]["period"] == 3600 and widget["properties"]["region"] == "eu-west-2"


def test_the_dashboard_shows_the_queues_and_the_environments_health():
    shown = {
        (ns, m, tuple(sorted(d.items())), o.get("stat") or w["properties"].get("stat"))
        for w in tiles(dashboard()).values()
        if w["type"] == "metric"
        for ns, m, d, o in metric_lines(w)
    }
    queue, dlq, env = (
        (("QueueName", "conveyor-dev-raw-events"),),
        (("QueueName", "conveyor-dev-raw-events-dlq"),),
        ("Environment", "conveyor-dev"),
    )
    promised = {
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible", queue, "Maximum"),
        ("AWS/SQS", "ApproximateAgeOfOldestMessage", queue, "Maximum"),
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible", dlq, "Maximum"),
        ("AmazonMWAA", "SchedulerHeartbeat", (env, ("Function", "Scheduler")), "Sum"),
        ("AWS/MWAA", "CPUUtilization", (("Cluster", "BaseWorker"), env), "SampleCount"),  # workers running
        ("AWS/MWAA", "CPUUtilization", (("Cluster", "AdditionalWorker"), env), "SampleCount"),
        ("AWS/MWAA", "CPUUtilization", (("Cluster", "BaseWorker"), env), "Maximum"),
        ("AWS/MWAA", "MemoryUtilization", (("Cluster", "AdditionalWorker"), env), "Maximum"),
        ("AWS/MWAA", "ApproximateAgeOfOldestTask", (env,), "Maximum"),
        ("AmazonMWAA", "TaskInstanceFailures", (("DAG", "All"), env, ("Task", "All")), "Sum"),
    }
    assert promised <= shown, sorted(promised - shown)


def test_the_dashboards_dimensions_are_this_environments_resources():
    """What the module renders the template with: the environment, the queues and the alarms
    Terraform creates, not names typed twice."""
    call = root()["module"]["monitoring"]
    assert call["environment_name"] == "${module.mwaa.environment_name}"
    assert resource(child("mwaa"), "aws_mwaa_environment.this")["name"] == "${var.name}"
    assert child("mwaa")["output"]["environment_name"]["value"] == "${aws_mwaa_environment.this.name}"
    assert call["queue_name"] == '${module.events.queue_names["raw-events"]}'
    assert call["dead_letter_queue_name"] == '${module.events.queue_names["raw-events-dlq"]}'
    names = child("events")["output"]["queue_names"]["value"]
    assert names == {
        "raw-events": "${aws_sqs_queue.raw_events.name}",
        "raw-events-dlq": "${aws_sqs_queue.raw_events_dlq.name}",
    }
    assert call["oldest_message_alarm_seconds"] == "${module.events.oldest_message_alarm_seconds}"
    body = resource(child("monitoring"), "aws_cloudwatch_dashboard.this")["dashboard_body"]
    for key, value in {
        "environment": "var.environment_name",
        "queue": "var.queue_name",
        "dead_letter_queue": "var.dead_letter_queue_name",
        "scheduler_heartbeat_alarm_arn": "aws_cloudwatch_metric_alarm.scheduler_heartbeat.arn",
    }.items():
        assert re.search(rf"\b{key}\s*=\s*{re.escape(value)}\b", body), key
    # The alarm tile: every alarm that can turn red, each from the module that owns it.
    [alarm_tile] = [w for w in dashboard()["widgets"] if w["type"] == "alarm"]
    assert alarm_tile["properties"]["alarms"] == [
        "arn:dead-letters",
        "arn:oldest-message",
        "arn:scheduler-heartbeat",
        "arn:failed-tasks",
    ]
    assert child("events")["output"]["alarm_arns"]["value"] == {
        "dead_letters": "${aws_cloudwatch_metric_alarm.dead_letters.arn}",
        "oldest_message": "${aws_cloudwatch_metric_alarm.oldest_message.arn}",
    }
    assert "failed_tasks = module.mwaa.failed_tasks_alarm_arn" in call["alarm_arns"]
    # The oldest-message tile draws the alarm's threshold.
    oldest = tiles(dashboard())["raw-events queue: oldest message age (s)"]
    assert oldest["properties"]["annotations"]["horizontal"][0]["value"] == 10800


def test_the_scheduler_heartbeat_alarm_fires_when_heartbeats_stop():
    alarm = resource(child("monitoring"), "aws_cloudwatch_metric_alarm.scheduler_heartbeat")
    assert (alarm["namespace"], alarm["metric_name"]) == ("AmazonMWAA", "SchedulerHeartbeat")
    assert alarm["dimensions"] == {"Function": "Scheduler", "Environment": "${var.environment_name}"}
    assert alarm["comparison_operator"] == "LessThanThreshold" and alarm["threshold"] == 1
    assert alarm["treat_missing_data"] == "breaching", "a dead scheduler sends nothing"
    assert alarm["alarm_actions"] == ["${var.alarm_topic_arn}"]
    assert root()["module"]["monitoring"]["alarm_topic_arn"] == '${module.events.topic_arns["notifications"]}'


def test_mwaa_publishes_the_metrics_the_dashboard_reads():
    """MWAA sends Airflow's metrics to CloudWatch unless its configuration blocks them: nothing
    here may set a metrics allow or block list, or turn StatsD off."""
    options = child("mwaa")["locals"]["base_configuration_options"]
    assert not [k for k in options if k.startswith("metrics.")], options


def test_network_new_vpc_or_existing_subnets():
    mwaa = child("mwaa")
    assert resource(mwaa, "aws_subnet.private")["count"] == "${local.create_vpc ? 2 : 0}"
    assert mwaa["locals"]["create_vpc"] == "${length(var.existing_private_subnet_ids) == 0}"
    assert mwaa["locals"]["private_subnet_ids"] == (
        "${local.create_vpc ? aws_subnet.private[*].id : var.existing_private_subnet_ids}"
    )
    assert "aws_flow_log.this" in mwaa["resource"]
    assert "ingress" not in resource(mwaa, "aws_default_security_group.this")


def test_snowflake_role_reads_only_the_buckets_it_loads_from():
    call = root()["module"]["snowflake_integration"]
    assert (
        call["readable_buckets"]
        == '${{for kind in ["curated", "stage", "processed"] : kind => module.storage.buckets[kind].arn}}'
    )
    doc = statements(data(child("snowflake_integration"), "aws_iam_policy_document.read_buckets"))
    actions = {a for s in doc for a in s["actions"]}
    assert actions == {
        "s3:GetObject",
        "s3:GetObjectVersion",
        "s3:ListBucket",
        "s3:GetBucketLocation",
        "kms:Decrypt",
    }


# --- checkov ----------------------------------------------------------------------------------

CHECKOV = ROOT / ".venv-tools" / "bin" / "checkov"


def test_checkov_reports_no_failed_checks_and_every_skip_is_justified():
    assert CHECKOV.exists(), "checkov is missing: `make test` installs it into .venv-tools"
    result = subprocess.run(
        [str(CHECKOV), "-d", str(TF), "--skip-download", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    report = json.loads(result.stdout)
    summary = report["summary"]
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']})" for c in report["results"]["failed_checks"]
    ]
    assert summary["failed"] == 0, "checkov failed checks:\n" + "\n".join(failed)
    assert summary["parsing_errors"] == 0
    assert summary["passed"] > 200  # it really scanned the modules
    for check in report["results"]["skipped_checks"]:
        reason = check["check_result"].get("suppress_comment") or ""
        assert len(reason) > 30, f"{check['check_id']} on {check['resource']} is skipped without a reason"
    # No skip comment anywhere lacks a reason.
    for path in TF.rglob("*.tf"):
        for line in path.read_text().splitlines():
            if "checkov:skip=" in line:
                assert re.search(r"checkov:skip=CKV2?_AWS_\d+:.{30,}", line), f"{path}: {line.strip()}"
