"""Schema drift on a real Postgres: the catalog a table has, what changed between two of its
shapes (each change made by real DDL on the ToteSys schema), and the policy's decisions."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from conftest import read_messages, run_dag, task_states

from conveyor.config import ConfigError
from conveyor.totesys import drift, drift_notices
from conveyor.totesys.tables import TableSpec
from conveyor_local import totesys_data
from conveyor_local.provision import NOTIFICATIONS_INBOX
from conveyor_local.stack import free_port

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.integration

ADDRESS = TableSpec("address", "address_id", "last_updated")


@pytest.fixture
def db(pg_database):
    with psycopg.connect(pg_database, autocommit=True) as conn:
        totesys_data.create_schema(conn)
        yield conn


def changes_after(db, spec, *ddl) -> list[tuple]:
    before = drift.source_schema(db, spec)
    for statement in ddl:
        db.execute(statement)
    after = drift.source_schema(db, spec)
    assert drift.SourceSchema.from_dict(after.to_dict()) == after  # it round-trips through JSON
    return [(c.column, c.kind, c.old, c.new, c.retype) for c in drift.compare(before, after)]


def test_the_catalog_gives_exact_types_nullability_and_the_key(db):
    schema = drift.source_schema(db, TableSpec("sales_order", "sales_order_id", "last_updated"))
    columns = {c.name: (c.type, c.nullable) for c in schema.columns}
    assert schema.primary_key == ("sales_order_id",)
    assert columns["sales_order_id"] == ("integer", False)
    assert columns["unit_price"] == ("numeric(10,2)", False)
    assert columns["last_updated"] == ("timestamp without time zone", False)
    assert next(iter(columns)) == "sales_order_id", "in the table's column order"
    staff = drift.source_schema(
        db, TableSpec("staff", "staff_id", "last_updated", ("staff_id", "last_updated"))
    )
    assert [c.name for c in staff.columns] == ["staff_id", "last_updated"], "only the configured columns"
    with pytest.raises(ConfigError, match="'nope': no such table"):
        drift.source_schema(db, TableSpec("nope", "id", "last_updated"))


def test_nothing_changed_is_no_change(db):
    assert changes_after(db, ADDRESS) == []


def test_each_change_kind_is_named_with_old_and_new(db):
    assert changes_after(
        db,
        ADDRESS,
        "ALTER TABLE address ADD COLUMN region varchar(40)",
        "ALTER TABLE address DROP COLUMN district",
        "ALTER TABLE address ALTER COLUMN address_id TYPE bigint",
        "ALTER TABLE address ALTER COLUMN phone DROP NOT NULL",
    ) == [
        ("address_id", "retyped", "integer", "bigint", "widening"),
        ("phone", "nullability", "NOT NULL", "NULL", None),
        ("region", "added", None, "character varying(40)", None),
        ("district", "dropped", "character varying(100)", None, None),
    ]


def test_a_primary_key_change_is_named(db):
    assert changes_after(
        db,
        ADDRESS,
        "ALTER TABLE address DROP CONSTRAINT address_pkey CASCADE",
        "ALTER TABLE address ADD PRIMARY KEY (address_id, created_at)",
    ) == [("address_id, created_at", "primary_key", "address_id", "address_id, created_at", None)]


@pytest.mark.parametrize(
    ("old", "new", "kind"),
    [
        ("integer", "bigint", "widening"),
        ("smallint", "integer", "widening"),
        ("bigint", "integer", "narrowing"),
        ("numeric(10,2)", "numeric(12,2)", "widening"),
        ("numeric(10,2)", "numeric(12,4)", "widening"),
        ("numeric(10,2)", "numeric(10,3)", "incompatible"),  # a digit moves from the integer part
        ("numeric(10,2)", "numeric(12,1)", "incompatible"),  # 1.25 would be rounded
        ("numeric(10,2)", "numeric", "widening"),
        ("integer", "numeric(12,2)", "widening"),
        ("integer", "numeric(8,0)", "narrowing"),
        ("integer", "numeric(10,0)", "widening"),  # 2147483647 has 10 digits
        ("numeric(10,0)", "integer", "narrowing"),  # 9999999999 is past 2^31
        ("numeric(9,0)", "integer", "widening"),
        ("numeric(19,0)", "bigint", "narrowing"),
        ("varchar(20)", "varchar(40)", "widening"),
        ("varchar(40)", "varchar(20)", "narrowing"),
        ("varchar(20)", "text", "widening"),
        ("text", "varchar(20)", "narrowing"),
        ("varchar(20)", "char(40)", "incompatible"),
        ("timestamp", "timestamptz", "widening"),
        ("timestamptz", "timestamp", "narrowing"),
        ("timestamp", "timestamp(3)", "narrowing"),
        ("real", "double precision", "widening"),
        ("integer", "text", "incompatible"),
        ("text", "integer", "incompatible"),
        ("date", "timestamp", "incompatible"),
    ],
)
def test_retypes_made_by_real_ddl_are_classified(db, old, new, kind):
    """Each retype made on a real table (USING casts where Postgres needs one), so the types compared
    are exactly the ones format_type() gives."""
    spec = TableSpec("probe", "id", "last_updated")
    db.execute(f"CREATE TABLE probe (id integer PRIMARY KEY, v {old}, last_updated timestamp)")
    [(column, change, before, after, retype)] = changes_after(
        db, spec, f"ALTER TABLE probe ALTER COLUMN v TYPE {new} USING NULL"
    )
    assert (column, change, retype) == ("v", "retyped", kind), (before, after)


@pytest.mark.parametrize(
    ("have", "want", "becomes"),
    [
        ("integer", "bigint", "bigint"),
        ("bigint", "integer", "bigint"),  # already holds it: unchanged
        ("numeric(10,2)", "numeric(12,3)", "numeric(12,3)"),
        ("numeric(14,2)", "numeric(12,3)", "numeric(15,3)"),  # 12 integer digits and 3 decimals
        ("integer", "numeric(12,2)", "numeric(12,2)"),
        ("numeric(10,2)", "numeric", "numeric"),
        ("text", "character varying(40)", "text"),
        ("timestamp without time zone", "timestamp with time zone", "timestamp with time zone"),
        ("integer", "text", None),  # nothing holds both exactly: the widening fails, unaltered
    ],
)
def test_a_column_widens_to_the_narrowest_type_that_holds_both(have, want, becomes):
    from conveyor.totesys import widen

    assert widen.wider(have, want) == becomes


POLICY = drift.DEFAULT_POLICY


def decisions(db, *ddl, policy=POLICY) -> list[tuple]:
    before = drift.source_schema(db, ADDRESS)
    for statement in ddl:
        db.execute(statement)
    changes = drift.compare(before, drift.source_schema(db, ADDRESS))
    made = drift.plan(changes, policy, used=drift.used_columns("address"), cursor="last_updated")
    return [(d.change.column, d.action, d.alter, d.warning) for d in made.decisions], made


def test_the_default_policy_carries_additions_and_widenings_and_fails_a_dropped_used_column(db):
    actions, made = decisions(
        db,
        "ALTER TABLE address ADD COLUMN region text",
        "ALTER TABLE address ALTER COLUMN address_id TYPE bigint",
        "ALTER TABLE address DROP COLUMN district",
    )
    assert actions == [
        ("address_id", "carry", "type", False),
        ("region", "carry", "add", False),
        ("district", "fail", None, False),
    ]
    message = made.failure_message()
    assert "address.district: dropped (character varying(100) → -)" in message
    assert "a star model reads it" in message and "docs/runbook.md" in message


def test_a_dropped_unused_column_is_carried_with_a_warning_and_a_policy_can_refuse_it(db):
    db.execute("ALTER TABLE address ADD COLUMN notes text")
    actions, made = decisions(db, "ALTER TABLE address DROP COLUMN notes")
    assert actions == [("notes", "carry", "drop not null", True)] and made.failures == []
    db.execute("ALTER TABLE address ADD COLUMN notes text")
    strict = drift.parse_policy({"dropped": "fail"}, "table 'address'")
    actions, made = decisions(db, "ALTER TABLE address DROP COLUMN notes", policy=strict)
    assert actions == [("notes", "fail", None, False)]
    assert "drift policy says dropped: fail" in made.failure_message()


def test_a_key_change_an_incompatible_retype_and_a_dropped_cursor_always_fail(db):
    everything_carried = {kind: "carry" for kind in drift.DEFAULT_POLICY}
    actions, _ = decisions(
        db,
        "ALTER TABLE address ALTER COLUMN phone TYPE integer USING NULL",
        "ALTER TABLE address DROP CONSTRAINT address_pkey CASCADE",
        "ALTER TABLE address ADD PRIMARY KEY (address_id, created_at)",
        "ALTER TABLE address DROP COLUMN last_updated",
        policy=everything_carried,
    )
    assert [(c, a) for c, a, _, _ in actions] == [
        ("phone", "fail"),
        ("last_updated", "fail"),
        ("address_id, created_at", "fail"),
    ]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("carry", "table 'address': field 'drift' must be an object"),
        ({"renamed": "carry"}, "table 'address': field 'drift.renamed': no such change kind"),
        ({"added": "ignore"}, "table 'address': field 'drift.added': 'ignore' is not one of carry, fail"),
    ],
)
def test_a_bad_policy_names_the_table_and_field(value, message):
    with pytest.raises(ConfigError, match=message):
        drift.parse_policy(value, "table 'address'")


def test_the_tables_config_carries_a_policy_per_table_and_refuses_a_bad_one():
    from conveyor.totesys.tables import parse_tables_config

    text = '{"tables": [{"name": "address", "primary_key": "address_id", "cursor": "last_updated", %s}]}'
    [spec] = parse_tables_config(text % '"drift": {"added": "fail"}', "tables.json")
    assert spec.drift_policy() == {**drift.DEFAULT_POLICY, "added": "fail"}
    assert TableSpec.from_dict(spec.to_dict()) == spec
    [plain] = parse_tables_config(text % '"columns": null', "tables.json")
    assert plain.drift_policy() == drift.DEFAULT_POLICY
    with pytest.raises(ConfigError, match=r"tables.json: table 'address': field 'drift.added': 'yes' is not"):
        parse_tables_config(text % '"drift": {"added": "yes"}', "tables.json")


# --- through totesys_etl (dag.test(), real Postgres source and warehouse, moto S3) -----------------

T1 = datetime(2024, 3, 5, 20, 0, tzinfo=UTC)
NEXT = T1 + timedelta(minutes=3)  # the next run: its window [T1 - 60 s, T1 + 2 min) holds T1
BUCKET = "conveyor-local-ingestion"


_FIRST_RUN: dict = {}  # what the first run left, once per test process (see `totesys`)


def _database_name(dsn: str) -> str:
    from psycopg.conninfo import conninfo_to_dict

    return conninfo_to_dict(dsn)["dbname"]


def _copy_database(admin_dsn: str, source: str, target: str) -> None:
    """`target` becomes a copy of `source` (CREATE DATABASE ... TEMPLATE: a file copy, no replay)."""
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(  # a template must have no sessions: the run's pooled ones are done with
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (source,),
        )
        admin.execute(f'DROP DATABASE IF EXISTS "{target}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{target}" TEMPLATE "{source}"')


@pytest.fixture
def totesys(pg_database, warehouse_dsn, aws, postgres_admin_dsn):
    """ToteSys populated, an empty warehouse, and a first (full snapshot) run that reached it.

    Every DAG test here starts from the same first run, so it runs once per test process and each
    test gets a copy of all it left: both databases (Postgres templates), every S3 object, and the
    messages on every queue. The DagRun itself stays in the process's metadata DB, as any earlier
    test's runs do."""
    source, target = _database_name(pg_database), _database_name(warehouse_dsn)
    if not _FIRST_RUN:
        with psycopg.connect(pg_database, autocommit=True) as conn:
            totesys_data.create_schema(conn)
            totesys_data.populate(conn, scale=0.5, seed=1, at=T1 - timedelta(minutes=5))
        first = run_dag("totesys_etl", T1, full_snapshot=True)
        assert first.state == "success", task_states(first)
        s3, sqs = aws["session"].client("s3"), aws["session"].client("sqs")
        objects = {}
        for bucket in aws["buckets"].values():
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
                for item in page.get("Contents", []):
                    got = s3.get_object(Bucket=bucket, Key=item["Key"])
                    objects[bucket, item["Key"]] = (
                        got["Body"].read(),
                        got.get("ContentType"),
                        got["Metadata"],
                    )
        messages = {}
        for kind, url in aws["queues"].items():
            received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
            messages[kind] = []
            while batch := received.get("Messages", []):
                for message in batch:
                    messages[kind].append(message["Body"])
                    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
                received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
        _FIRST_RUN.update(
            source=f"{source}_first_run", warehouse=f"{target}_first_run", objects=objects, messages=messages
        )
        _copy_database(postgres_admin_dsn, source, _FIRST_RUN["source"])
        _copy_database(postgres_admin_dsn, target, _FIRST_RUN["warehouse"])
    else:
        _copy_database(postgres_admin_dsn, _FIRST_RUN["source"], source)
        _copy_database(postgres_admin_dsn, _FIRST_RUN["warehouse"], target)
        s3 = aws["session"].client("s3")
        for (bucket, key), (body, content_type, metadata) in _FIRST_RUN["objects"].items():
            s3.put_object(
                Bucket=bucket,
                Key=key,
                Body=body,
                Metadata=metadata,
                **({"ContentType": content_type} if content_type else {}),
            )
    sqs = aws["session"].client("sqs")
    for kind, bodies in _FIRST_RUN["messages"].items():
        for body in bodies:
            sqs.send_message(QueueUrl=aws["queues"][kind], MessageBody=body)
    with psycopg.connect(pg_database, autocommit=True) as conn:
        yield conn


def warehouse_state(warehouse_dsn) -> dict[str, list[tuple]]:
    """Every landed row and every star row: what a stopped run must leave as it was."""
    from conveyor.totesys import star

    with psycopg.connect(warehouse_dsn) as conn:
        landed = [
            t
            for (t,) in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'staging' "
                "AND table_name LIKE '%%\\_landed' ORDER BY 1"
            )
        ]
        return {
            t: conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall()
            for t in [*star.STAR, *(f"staging.{t}" for t in landed), "staging.windows"]
        } | {
            "columns": conn.execute(
                "SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns "
                "WHERE table_schema = 'staging' ORDER BY 1, 2"
            ).fetchall()
        }


def schema_changes(warehouse_dsn, detail: bool = False) -> list[tuple]:
    with psycopg.connect(warehouse_dsn) as conn:
        return conn.execute(
            "SELECT table_name, column_name, change, old_value, new_value, action, window_name, detected_at"
            + (", detail" if detail else "")
            + " FROM staging.schema_changes ORDER BY change_id"
        ).fetchall()


def typed(conn, relations, *columns) -> list[str]:
    """format_type() of each relation's columns, relation by relation."""
    return [
        conn.execute(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = %s::regclass "
            "AND attname = %s",
            (relation, column),
        ).fetchone()[0]
        for relation in relations
        for column in columns
    ]


def inbox(aws) -> list[dict]:
    """Every message on the notifications topic since the last read (SNS envelopes)."""
    return read_messages(aws["session"], aws["queues"][NOTIFICATIONS_INBOX])


def drift_messages(envelopes: list[dict]) -> list[tuple[str, dict]]:
    """(subject, message) of the schema-change messages among them."""
    return [
        (e["Subject"], json.loads(e["Message"]))
        for e in envelopes
        if e["MessageAttributes"].get("status", {}).get("Value") == drift_notices.STATUS
    ]


def sent_marks(warehouse_dsn) -> list[tuple]:
    with psycopg.connect(warehouse_dsn) as conn:
        return conn.execute(
            "SELECT column_name, run_id, message_id, notified_by FROM staging.schema_changes ORDER BY change_id"
        ).fetchall()


def test_dag_an_added_column_is_carried_and_its_values_reach_the_warehouse(totesys, warehouse_dsn, aws):
    """On the code before drift handling, this run failed at land_table (COPY: column "region" of
    staging.address_landed does not exist), and every later run with it. The change is one message
    on the notifications topic, and the next run sends none."""
    assert drift_messages(inbox(aws)) == [], "the first run changed nothing"
    totesys.execute("ALTER TABLE address ADD COLUMN region varchar(40)")
    totesys.execute(
        "UPDATE address SET region = 'North West', last_updated = %s WHERE address_id = 1",
        (T1.replace(tzinfo=None),),
    )
    dag_run = run_dag("totesys_etl", NEXT)
    assert dag_run.state == "success", task_states(dag_run)
    assert task_states(dag_run)["check_drift"] == ["success"]
    with psycopg.connect(warehouse_dsn) as conn:
        landed = conn.execute(
            "SELECT address_id, region FROM staging.address_landed WHERE region IS NOT NULL"
        ).fetchall()
        newest = conn.execute("SELECT region FROM staging.address WHERE address_id = 1").fetchone()
        region_type = conn.execute(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = 'staging.address_landed'::regclass AND attname = 'region'"
        ).fetchone()
        star_window = conn.execute("SELECT window_name FROM dim_location WHERE location_id = 1").fetchone()
    assert landed == [(1, "North West")] and newest == ("North West",)
    assert region_type == ("character varying(40)",)
    window = "20240305T195900Z-20240305T200200Z"
    assert star_window == (window,), "the changed address's version reached the star"
    assert schema_changes(warehouse_dsn) == [
        ("address", "region", "added", None, "character varying(40)", "carry", window, NEXT)
    ]
    envelopes = inbox(aws)
    [(subject, message)] = drift_messages(envelopes)
    assert subject == "[conveyor] totesys_etl schema change address.region: added, carried"
    assert message | {"detail": None, "change_id": None} == {
        "status": "schema_change",
        "dag_id": "totesys_etl",
        "run_id": dag_run.run_id,
        "table": "address",
        "column": "region",
        "change": "added",
        "old": None,
        "new": "character varying(40)",
        "window": window,
        "action": "carry",
        "detail": None,
        "compared_with": "20240305T195600Z-20240305T195900Z-full",  # the first run accepted it
        "detected_at": NEXT.isoformat(),
        "change_id": None,
        "policy": "docs/schema-drift.md",
    }
    assert message["detail"].startswith("address.region: added (- → character varying(40)): carried")
    [sns_id] = [e["MessageId"] for e in envelopes if e["Subject"] == subject]
    assert sent_marks(warehouse_dsn) == [("region", dag_run.run_id, sns_id, dag_run.run_id)]
    again = run_dag("totesys_etl", NEXT + timedelta(minutes=3))
    assert again.state == "success", task_states(again)
    assert len(schema_changes(warehouse_dsn)) == 1, "an accepted change is not detected again"
    assert drift_messages(inbox(aws)) == [], "nor sent again"


def test_dag_a_change_logged_while_the_topic_is_unreachable_is_sent_once_by_the_next_run(
    totesys, warehouse_dsn, aws, monkeypatch
):
    """SNS refuses connections when check_drift publishes (its endpoint is a closed local port;
    S3, STS and the databases are untouched): the run still carries the column, the change stays
    unsent in the log, and the next run sends it, once, naming the run that detected it."""
    inbox(aws)
    totesys.execute("ALTER TABLE address ADD COLUMN region varchar(40)")
    totesys.execute(
        "UPDATE address SET region = 'North West', last_updated = %s WHERE address_id = 1",
        (T1.replace(tzinfo=None),),
    )
    monkeypatch.setenv("AWS_ENDPOINT_URL_SNS", f"http://127.0.0.1:{free_port()}")
    detected = run_dag("totesys_etl", NEXT)
    assert detected.state == "success", task_states(detected)
    with psycopg.connect(warehouse_dsn) as conn:
        region = conn.execute("SELECT region FROM staging.address WHERE address_id = 1").fetchone()
    assert region == ("North West",), "the policy carried it, topic or not"
    assert drift_messages(inbox(aws)) == []
    assert sent_marks(warehouse_dsn) == [("region", detected.run_id, None, None)], "logged, unsent"

    monkeypatch.delenv("AWS_ENDPOINT_URL_SNS")
    later = run_dag("totesys_etl", NEXT + timedelta(minutes=3))
    assert later.state == "success", task_states(later)
    [(_, message)] = drift_messages(inbox(aws))
    assert (message["table"], message["column"], message["change"]) == ("address", "region", "added")
    assert message["run_id"] == detected.run_id, "the run that detected it"
    [(_, run_id, sns_id, notified_by)] = sent_marks(warehouse_dsn)
    assert (run_id, notified_by) == (detected.run_id, later.run_id) and sns_id


def test_dag_a_dropped_column_a_model_uses_stops_the_run_before_anything_lands(totesys, warehouse_dsn, aws):
    """On the code before drift handling, the run failed in tables_to_extract with 'columns
    district are not extracted' (no check_drift task, no log, no mention that it was dropped).
    The change is one message on the notifications topic, sent before check_drift's failure alert;
    the next run, stopping the same way, sends its failure alert and no second change message."""
    before = warehouse_state(warehouse_dsn)
    inbox(aws)
    totesys.execute("ALTER TABLE address DROP COLUMN district")
    totesys.execute("UPDATE address SET last_updated = %s WHERE address_id = 1", (T1.replace(tzinfo=None),))
    envelopes = []
    for attempt in range(2):  # each run stops the same way, and the change is logged and sent once
        dag_run = run_dag("totesys_etl", NEXT + timedelta(minutes=3 * attempt))
        received = inbox(aws)
        envelopes += received
        subjects = [e["Subject"] for e in received]
        failed = [i for i, subject in enumerate(subjects) if "FAILED totesys_etl.check_drift" in subject]
        changed = [i for i, subject in enumerate(subjects) if "schema change" in subject]
        assert len(failed) == 1 and changed == ([] if attempt else [0]), subjects
        assert dag_run.state == "failed"
        states = task_states(dag_run)
        [ti] = [t for t in dag_run.get_task_instances() if t.task_id == "check_drift"]
        assert (ti.state, ti.try_number) == ("failed", 1), "a schema change is not retried"
        assert states["extract_table"] == ["upstream_failed"] and states["land_table"] == ["upstream_failed"]
        assert warehouse_state(warehouse_dsn) == before, "the warehouse is unchanged"
    [logged] = schema_changes(warehouse_dsn)
    assert logged[:6] == ("address", "district", "dropped", "character varying(100)", None, "fail")
    [alert] = [json.loads(e["Message"]) for e in envelopes if "check_drift" in e["Subject"]][-1:]
    assert "address.district: dropped (character varying(100) → -)" in alert["error"], alert["error"]
    assert "a star model reads it" in alert["error"] and "docs/runbook.md" in alert["error"]
    [(subject, message)] = drift_messages(envelopes)
    assert subject == "[conveyor] totesys_etl schema change address.district: dropped, run STOPPED"
    assert (message["column"], message["old"], message["new"], message["action"]) == (
        "district",
        "character varying(100)",
        None,
        "fail",
    )
    assert "a star model reads it" in message["detail"] and "restore the column" in message["detail"]


@pytest.mark.parametrize("new_type", ["numeric(12,3)", "numeric(10,3)"], ids=["widening", "incompatible"])
def test_dag_a_numeric_whose_scale_grows_is_never_rounded(totesys, warehouse_dsn, new_type):
    """unit_price numeric(10,2) → three decimals: landing it in numeric(10,2) would round 5.555 to
    5.56. A widening (numeric(12,3): more integer and fraction digits) is carried: the landing
    column, staging.sales_order and fact_sales_order.unit_price become numeric(12,3) and 5.555
    arrives exactly. An incompatible retype (numeric(10,3): a digit moves from the integer part)
    stops the run naming the column, the warehouse unchanged.

    On the code before drift handling, both runs succeeded with 5.56 landed; on the branch base
    (0c45293) the widening failed in check_drift ("not automated yet")."""
    before = warehouse_state(warehouse_dsn)
    totesys.execute(f"ALTER TABLE sales_order ALTER COLUMN unit_price TYPE {new_type}")
    totesys.execute(
        "UPDATE sales_order SET unit_price = 5.555, last_updated = %s WHERE sales_order_id = 1",
        (T1.replace(tzinfo=None),),
    )
    dag_run = run_dag("totesys_etl", NEXT)
    if new_type == "numeric(10,3)":
        assert dag_run.state == "failed"
        assert task_states(dag_run)["check_drift"] == ["failed"]
        assert warehouse_state(warehouse_dsn) == before, "nothing landed: nothing rounded"
        [logged] = schema_changes(warehouse_dsn)
        assert logged[:6] == ("sales_order", "unit_price", "retyped", "numeric(10,2)", new_type, "fail")
        return
    assert dag_run.state == "success", task_states(dag_run)
    with psycopg.connect(warehouse_dsn) as conn:
        landed = conn.execute(
            "SELECT unit_price FROM staging.sales_order_landed WHERE sales_order_id = 1 ORDER BY last_updated DESC"
        ).fetchone()
        newest = conn.execute(
            "SELECT unit_price FROM staging.sales_order WHERE sales_order_id = 1"
        ).fetchone()
        fact = conn.execute(
            "SELECT unit_price FROM fact_sales_order WHERE sales_order_id = 1 "
            "ORDER BY last_updated_date DESC, last_updated_time DESC"
        ).fetchone()
        types = typed(
            conn, ("staging.sales_order_landed", "staging.sales_order", "fact_sales_order"), "unit_price"
        )
    assert (landed, newest, fact) == ((Decimal("5.555"),),) * 3, "never rounded"
    assert types == ["numeric(12,3)"] * 3
    [logged] = schema_changes(warehouse_dsn, detail=True)
    assert logged[:6] == ("sales_order", "unit_price", "retyped", "numeric(10,2)", new_type, "carry")
    assert "staging.sales_order_landed.unit_price numeric(10,2) → numeric(12,3)" in logged[-1], logged[-1]
    assert "fact_sales_order.unit_price numeric(10,2) → numeric(12,3)" in logged[-1], logged[-1]


def test_dag_an_integer_widened_to_bigint_carries_a_value_past_2_31_exactly(totesys, warehouse_dsn):
    """sales_order_id (the key, read by the newest-version view and the window views) and
    units_sold integer → bigint, and an order with values past 2^31: the landing columns, the views
    and fact_sales_order widen, the values arrive exactly, the export and the gate pass.

    On the branch base (0c45293): check_drift failed ("... is integer and must become bigint; ...
    not automated yet"); before drift handling, land_table failed (COPY: value out of range)."""
    big_id, big_units = 3_000_000_000, 3_000_000_001
    totesys.execute("ALTER TABLE sales_order ALTER COLUMN sales_order_id TYPE bigint")
    totesys.execute("ALTER TABLE sales_order ALTER COLUMN units_sold TYPE bigint")
    columns = [
        c
        for (c,) in totesys.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'sales_order' "
            "AND column_name NOT IN ('sales_order_id', 'units_sold', 'last_updated') ORDER BY ordinal_position"
        )
    ]
    listed = ", ".join(columns)
    totesys.execute(
        f"INSERT INTO sales_order (sales_order_id, units_sold, last_updated, {listed}) "
        f"SELECT %s, %s, %s, {listed} FROM sales_order WHERE sales_order_id = 1",
        (big_id, big_units, T1.replace(tzinfo=None)),
    )
    dag_run = run_dag("totesys_etl", NEXT)
    assert dag_run.state == "success", task_states(dag_run)
    with psycopg.connect(warehouse_dsn) as conn:
        query = "SELECT sales_order_id, units_sold FROM {} WHERE sales_order_id > 2147483647"
        found = [
            conn.execute(query.format(t)).fetchall()
            for t in ("staging.sales_order_landed", "staging.sales_order", "fact_sales_order")
        ]
        covered = conn.execute(
            "SELECT count(*) FROM staging.fact_sales_order_window WHERE sales_order_id = %s", (big_id,)
        ).fetchone()
        types = typed(
            conn, ("staging.sales_order_landed", "fact_sales_order"), "sales_order_id", "units_sold"
        )
    assert found == [[(big_id, big_units)]] * 3, "arrived exactly"
    assert covered[0] >= 1, "the window views were recreated and see it"
    assert types == ["bigint"] * 4
    assert [row[:6] for row in schema_changes(warehouse_dsn)] == [
        ("sales_order", "sales_order_id", "retyped", "integer", "bigint", "carry"),
        ("sales_order", "units_sold", "retyped", "integer", "bigint", "carry"),
    ]
    again = run_dag("totesys_etl", NEXT + timedelta(minutes=3))
    assert again.state == "success", task_states(again)
    assert len(schema_changes(warehouse_dsn)) == 2, "an accepted widening is not detected again"


def test_dag_a_widening_behind_a_readers_lock_fails_retryably_then_is_carried(totesys, warehouse_dsn):
    """An analyst's open transaction on staging.sales_order while unit_price widens: check_drift's
    DROP VIEW waits at most migrations.LOCK_TIMEOUT, that try fails (LockNotAvailable: retried,
    unlike a schema change); the reader gone, the retry carries the widening and 5.555 arrives.
    On the branch base (0c45293): check_drift failed on try 1 for good ("not automated yet")."""
    import threading
    import time

    totesys.execute("ALTER TABLE sales_order ALTER COLUMN unit_price TYPE numeric(12,3)")
    totesys.execute(
        "UPDATE sales_order SET unit_price = 5.555, last_updated = %s WHERE sales_order_id = 1",
        (T1.replace(tzinfo=None),),
    )
    reader = psycopg.connect(warehouse_dsn)
    reader.execute("SELECT count(*) FROM staging.sales_order")  # holds its lock till it ends
    waits = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE 'DROP VIEW%'"
    seen = {}

    def release_once_a_drop_gave_up():
        with psycopg.connect(warehouse_dsn, autocommit=True) as watcher:
            for wanted, key in ((True, "waited"), (False, "gave_up")):  # it waits, then gives up
                deadline = time.monotonic() + 120
                while (watcher.execute(waits).fetchone()[0] > 0) != wanted and time.monotonic() < deadline:
                    time.sleep(0.1)
                seen[key] = time.monotonic()
        reader.rollback()

    watcher = threading.Thread(target=release_once_a_drop_gave_up, daemon=True)
    watcher.start()
    try:
        dag_run = run_dag("totesys_etl", NEXT)
    finally:
        watcher.join(timeout=150)
        reader.close()
    waited = seen["gave_up"] - seen["waited"]
    assert 5 < waited < 40, f"the DROP VIEW waited {waited:.1f} s (lock_timeout 10 s)"
    assert dag_run.state == "success", task_states(dag_run)
    [ti] = [t for t in dag_run.get_task_instances() if t.task_id == "check_drift"]
    assert (ti.state, ti.try_number) == ("success", 2), "the first try gave up, the retry applied it"
    with psycopg.connect(warehouse_dsn) as conn:
        fact = conn.execute(
            "SELECT unit_price FROM fact_sales_order WHERE sales_order_id = 1 "
            "ORDER BY last_updated_date DESC, last_updated_time DESC"
        ).fetchone()
    assert fact == (Decimal("5.555"),)
    assert [row[5] for row in schema_changes(warehouse_dsn)] == ["carry"], (
        "logged once, by the try that applied it"
    )


def test_dag_a_dropped_column_no_model_uses_is_carried_with_a_warning(totesys, warehouse_dsn):
    """A column the source gained (carried) and later dropped: no model reads it, so the run goes
    on, the landing column stays (its old values kept) and new versions land without it. On the
    code before drift handling, the first run already failed at land_table (no such column)."""
    totesys.execute("ALTER TABLE address ADD COLUMN region varchar(40)")
    totesys.execute(
        "UPDATE address SET region = 'North West', last_updated = %s WHERE address_id = 1",
        (T1.replace(tzinfo=None),),
    )
    assert run_dag("totesys_etl", NEXT).state == "success"
    totesys.execute("ALTER TABLE address DROP COLUMN region")
    totesys.execute(
        "UPDATE address SET city = 'Leeds', last_updated = %s WHERE address_id = 1",
        ((NEXT + timedelta(minutes=1)).replace(tzinfo=None),),
    )
    dag_run = run_dag("totesys_etl", NEXT + timedelta(minutes=3))
    assert dag_run.state == "success", task_states(dag_run)
    with psycopg.connect(warehouse_dsn) as conn:
        versions = conn.execute(
            "SELECT city, region FROM staging.address_landed WHERE address_id = 1 ORDER BY last_updated"
        ).fetchall()
        city = conn.execute("SELECT city FROM dim_location WHERE location_id = 1").fetchone()
    assert versions[-2:] == [(versions[-2][0], "North West"), ("Leeds", None)]
    assert city == ("Leeds",), "the version without the column reached the star"
    logged = schema_changes(warehouse_dsn)
    assert [row[:6] for row in logged] == [
        ("address", "region", "added", None, "character varying(40)", "carry"),
        ("address", "region", "dropped", "character varying(40)", None, "carry"),
    ]
    with psycopg.connect(warehouse_dsn) as conn:
        [(detail,)] = conn.execute(
            "SELECT detail FROM staging.schema_changes WHERE change = 'dropped'"
        ).fetchall()
    assert "address.region: dropped" in detail and "no model reads it" in detail, detail


def test_dag_a_primary_key_change_stops_the_run_before_anything_lands(totesys, warehouse_dsn):
    """The landing, the newest-version views and the star all key on address_id: a source keyed on
    (address_id, city) may hold two rows per id, so the run stops, naming the key and the step. On
    the code before drift handling, the run succeeded without a word."""
    before = warehouse_state(warehouse_dsn)
    totesys.execute("ALTER TABLE address DROP CONSTRAINT address_pkey CASCADE")
    totesys.execute("ALTER TABLE address ADD PRIMARY KEY (address_id, city)")
    totesys.execute("UPDATE address SET last_updated = %s WHERE address_id = 1", (T1.replace(tzinfo=None),))
    dag_run = run_dag("totesys_etl", NEXT)
    assert dag_run.state == "failed"
    assert task_states(dag_run)["check_drift"] == ["failed"]
    assert warehouse_state(warehouse_dsn) == before, "the warehouse is unchanged"
    [logged] = schema_changes(warehouse_dsn)
    assert logged[:6] == (
        "address",
        "address_id, city",
        "primary_key",
        "address_id",
        "address_id, city",
        "fail",
    ), logged


def test_dag_a_table_the_config_adds_is_landed_and_one_it_removes_keeps_its_rows(
    totesys, warehouse_dsn, aws, monkeypatch
):
    """Config changes are drift too: an added table is logged and landed from the catalog; removed
    again, its extract stops, its landed rows stay, and the log says so once."""
    totesys.execute(
        "CREATE TABLE promotion (promotion_id serial PRIMARY KEY, code varchar(20) NOT NULL, "
        "created_at timestamp NOT NULL, last_updated timestamp NOT NULL)"
    )
    totesys.execute(
        "INSERT INTO promotion (code, created_at, last_updated) VALUES ('SPRING', %s, %s)",
        (T1.replace(tzinfo=None),) * 2,
    )
    s3 = aws["session"].client("s3")
    config = json.loads((ROOT / "include/config/totesys_tables.json").read_text())

    def use(tables: list[dict]) -> None:
        s3.put_object(Bucket=BUCKET, Key="config/tables.json", Body=json.dumps({**config, "tables": tables}))
        monkeypatch.setenv("AIRFLOW_VAR_TOTESYS_TABLES_CONFIG", f"s3://{BUCKET}/config/tables.json")

    use([*config["tables"], {"name": "promotion", "primary_key": "promotion_id", "cursor": "last_updated"}])
    added = run_dag("totesys_etl", NEXT)
    assert added.state == "success", task_states(added)
    use(config["tables"])
    for attempt in (1, 2):
        removed = run_dag("totesys_etl", NEXT + timedelta(minutes=3 * attempt))
        assert removed.state == "success", task_states(removed)
        assert "promotion" not in [
            t.rendered_map_index for t in removed.get_task_instances() if t.task_id == "extract_table"
        ]
    with psycopg.connect(warehouse_dsn) as conn:
        kept = conn.execute("SELECT promotion_id, code FROM staging.promotion_landed").fetchall()
    assert kept == [(1, "SPRING")], "the removed table keeps its rows"
    assert [row[:3] + row[5:7] for row in schema_changes(warehouse_dsn)] == [
        ("promotion", None, "table_added", "carry", "20240305T195900Z-20240305T200200Z"),
        ("promotion", None, "table_removed", "carry", "20240305T200200Z-20240305T200500Z"),
    ]


# --- reconciling with the warehouse (real source and warehouse databases, no Airflow) -------------

SPECS = [ADDRESS, TableSpec("department", "department_id", "last_updated")]


@pytest.fixture
def both(pg_database, warehouse_dsn):
    """(source, warehouse) connections: ToteSys's schema, and a migrated warehouse."""
    from conveyor.totesys import migrations

    with (
        psycopg.connect(pg_database, autocommit=True) as source,
        psycopg.connect(warehouse_dsn) as warehouse,
    ):
        totesys_data.create_schema(source)
        migrations.migrate(warehouse)
        yield source, warehouse


def reconcile(both, window: str, specs=SPECS) -> list[dict]:
    source, warehouse = both
    live = [drift.source_schema(source, spec) for spec in specs]
    return drift.reconcile(warehouse, specs, live, window, T1)


def landed_columns(warehouse, table: str) -> dict[str, tuple[str, bool]]:
    rows = warehouse.execute(
        "SELECT attname, format_type(atttypid, atttypmod), NOT attnotnull FROM pg_attribute "
        "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
        (f"staging.{table}_landed",),
    ).fetchall()
    warehouse.commit()
    return {name: (pg_type, nullable) for name, pg_type, nullable in rows}


def test_a_column_the_source_gained_before_the_first_check_is_still_an_addition(both):
    """No accepted schema yet: the landing table stands in for it."""
    source, warehouse = both
    source.execute("ALTER TABLE department ADD COLUMN cost_centre integer")
    decided = reconcile(both, "w1")
    assert [d["change"] for d in decided] == ["department.cost_centre: added (- → integer)"]
    assert landed_columns(warehouse, "department")["cost_centre"] == ("integer", True)
    view = warehouse.execute("SELECT * FROM staging.department LIMIT 0")
    assert [c.name for c in view.description][-1] == "cost_centre"
    warehouse.commit()
    assert reconcile(both, "w2") == [], "accepted: nothing to do the second time"


def test_a_dropped_unused_column_is_carried_and_its_not_null_relaxed(both):
    source, warehouse = both
    source.execute("ALTER TABLE department ADD COLUMN budget_code text NOT NULL DEFAULT 'x'")
    reconcile(both, "w1")
    assert landed_columns(warehouse, "department")["budget_code"] == ("text", True)
    warehouse.execute("ALTER TABLE staging.department_landed ALTER COLUMN budget_code SET NOT NULL")
    warehouse.commit()
    source.execute("ALTER TABLE department DROP COLUMN budget_code")
    [decided] = reconcile(both, "w2")
    assert decided == {
        "change": "department.budget_code: dropped (text → -)",
        "action": "carry",
        "warning": True,
    }
    assert landed_columns(warehouse, "department")["budget_code"] == ("text", True), "NULL from now on"


def views(warehouse) -> dict[str, str]:
    """Every view in staging, by name, with its definition."""
    rows = warehouse.execute(
        "SELECT viewname, definition FROM pg_views WHERE schemaname = 'staging' ORDER BY 1"
    ).fetchall()
    warehouse.commit()
    return dict(rows)


def test_a_widening_is_carried_into_the_landing_column_and_every_view_that_reads_it(both):
    """department_id integer → bigint: staging.department_landed's column is read by
    staging.department, which staging.dim_staff_source reads, and by staging.dim_staff_window:
    Postgres refuses the ALTER until they are dropped. Each is recreated from its own definition,
    with its options, comment and grants; a widening the landing column already holds (varchar →
    text) needs nothing. On the branch base (0c45293) the bigint widening failed: "... is integer
    and must become bigint; widening a landing column the star's views read is not automated yet"."""
    source, warehouse = both
    assert reconcile(both, "w0") == [], "the first check accepts the schema as it is"
    source.execute("ALTER TABLE department ALTER COLUMN manager TYPE varchar(200)")  # landing: text
    [decided] = reconcile(both, "w1")
    assert decided["action"] == "carry" and landed_columns(warehouse, "department")["manager"][0] == "text"

    warehouse.execute(
        "DO $$ BEGIN CREATE ROLE conveyor_drift_reader; EXCEPTION WHEN duplicate_object THEN NULL; END $$"
    )
    warehouse.execute("GRANT SELECT ON staging.department TO conveyor_drift_reader")
    warehouse.execute("COMMENT ON VIEW staging.department IS 'the newest department versions'")
    warehouse.execute("ALTER VIEW staging.department SET (security_barrier = true)")
    warehouse.commit()
    before = views(warehouse)
    source.execute("ALTER TABLE department ALTER COLUMN department_id TYPE bigint")  # landing: integer
    [decided] = reconcile(both, "w2")
    assert decided == {
        "change": "department.department_id: widening retype (integer → bigint)",
        "action": "carry",
        "warning": False,
    }
    assert landed_columns(warehouse, "department")["department_id"] == ("bigint", False)
    assert views(warehouse) == before, "every view recreated from its own definition"
    kept = warehouse.execute(
        "SELECT obj_description('staging.department'::regclass, 'pg_class'), "
        "has_table_privilege('conveyor_drift_reader', 'staging.department', 'SELECT'), "
        "(SELECT reloptions FROM pg_class WHERE oid = 'staging.department'::regclass), "
        "(SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
        " WHERE attrelid = 'staging.department'::regclass AND attname = 'department_id')"
    ).fetchone()
    assert kept == ("the newest department versions", True, ["security_barrier=true"], "bigint")
    [(detail,)] = warehouse.execute(
        "SELECT detail FROM staging.schema_changes WHERE window_name = 'w2'"
    ).fetchall()
    assert "staging.department_landed.department_id integer → bigint, views recreated: " in detail, detail
    for view in ("staging.department", "staging.dim_staff_source", "staging.dim_staff_window"):
        assert view in detail, detail
    warehouse.commit()
    assert reconcile(both, "w3") == [], "accepted: nothing to do the second time"


def test_a_widening_waits_a_bounded_time_for_a_view_readers_lock_and_applies_nothing(both, warehouse_dsn):
    """An analyst's open transaction on staging.sales_order (the view): dropping it for the ALTER
    gives up after migrations.LOCK_TIMEOUT with LockNotAvailable (not a SchemaDriftError: the task
    retries) instead of queueing every reader behind it. On the branch base (0c45293) it failed
    without retry (SchemaDriftError: "not automated yet")."""
    import time

    from airflow.sdk.exceptions import AirflowFailException

    from conveyor.totesys import migrations

    source, warehouse = both
    specs = [TableSpec("sales_order", "sales_order_id", "last_updated")]
    reconcile(both, "w0", specs)
    source.execute("ALTER TABLE sales_order ALTER COLUMN unit_price TYPE numeric(12,3)")
    with psycopg.connect(warehouse_dsn) as reader:
        reader.execute("SELECT count(*) FROM staging.sales_order")  # holds its lock till commit
        started = time.monotonic()
        with pytest.raises(psycopg.errors.LockNotAvailable) as waited:
            reconcile(both, "w1", specs)
        took = time.monotonic() - started
        warehouse.rollback()
    assert not isinstance(waited.value, AirflowFailException), "a retry may find the lock free"
    bound = int(migrations.LOCK_TIMEOUT.removesuffix("s"))
    assert took < bound + 30, f"waited {took:.1f} s"
    assert landed_columns(warehouse, "sales_order")["unit_price"][0] == "numeric(10,2)"
    assert warehouse.execute("SELECT count(*) FROM staging.schema_changes").fetchone() == (0,)
    assert "sales_order" in views(warehouse)
    assert reconcile(both, "w2", specs)[0]["action"] == "carry", "the retry, the lock gone, applies it"
    assert landed_columns(warehouse, "sales_order")["unit_price"][0] == "numeric(12,3)"


def test_a_widening_a_view_cannot_follow_stops_the_run_naming_the_view_and_applies_nothing(both):
    """The cursor timestamp → timestamptz is a widening, but staging.dim_location_source calls
    staging.version_us(timestamp) on it: recreated over the widened column, the view would not
    resolve. The run stops (SchemaDriftError: no retry) naming the column and the view, and every
    ALTER is undone."""
    source, warehouse = both
    reconcile(both, "w0")
    before = views(warehouse)
    source.execute("ALTER TABLE address ALTER COLUMN last_updated TYPE timestamptz")
    with pytest.raises(drift.SchemaDriftError) as failed:
        reconcile(both, "w1")
    warehouse.rollback()
    message = str(failed.value)
    assert message.startswith("address.last_updated: widening retype (timestamp without time zone → ")
    assert (
        "staging.dim_location_source cannot be recreated over staging.address_landed.last_updated" in message
    )
    assert "function staging.version_us(timestamp with time zone) does not exist" in message
    assert landed_columns(warehouse, "address")["last_updated"][0] == "timestamp without time zone"
    assert views(warehouse) == before, "every view as it was"


def test_two_runs_that_check_at_once_apply_a_change_once(both, warehouse_dsn):
    """A backfill beside the scheduled run: the second waits for the first's lock, then finds the
    change accepted."""
    import threading

    source, warehouse = both
    source.execute("ALTER TABLE department ADD COLUMN cost_centre integer")
    warehouse.execute("SELECT pg_advisory_lock(hashtext('conveyor.totesys.drift'))")  # hold both back
    results = {}

    def run(name):
        with psycopg.connect(warehouse_dsn) as conn:
            results[name] = reconcile((source, conn), name)

    threads = [threading.Thread(target=run, args=(n,)) for n in ("scheduled", "backfill")]
    for thread in threads:
        thread.start()
    warehouse.execute("SELECT pg_advisory_unlock(hashtext('conveyor.totesys.drift'))")
    warehouse.commit()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(len(r) for r in results.values()) == [0, 1], results
    logged = warehouse.execute("SELECT count(*) FROM staging.schema_changes").fetchone()
    assert logged == (1,)


def test_an_alter_waits_a_bounded_time_for_a_readers_lock_and_applies_nothing(both, warehouse_dsn):
    """A long read on the landing table: the ALTER gives up after migrations.LOCK_TIMEOUT (the task
    retries) instead of queueing every reader behind it."""
    source, warehouse = both
    reconcile(both, "w0")
    source.execute("ALTER TABLE department ADD COLUMN cost_centre integer")
    with psycopg.connect(warehouse_dsn) as reader:
        reader.execute("SELECT count(*) FROM staging.department_landed")  # holds its lock till commit
        with pytest.raises(psycopg.errors.LockNotAvailable):
            reconcile(both, "w1")
        warehouse.rollback()
    assert "cost_centre" not in landed_columns(warehouse, "department")
    assert warehouse.execute("SELECT count(*) FROM staging.schema_changes").fetchone() == (0,)


class _Run:
    """What check and hold read of a DagRun."""

    dag_id, run_id, data_interval_end = "totesys_etl", "scheduled__2024-03-05T20:00:00+00:00", T1


def test_a_column_added_between_check_and_extract_is_reconciled_by_the_extract(both, pg_database, aws):
    """The race a scheduled run can meet: check_drift passed the table on, then the source gained a
    column before extract_table read it. Without `hold` the extract wrote the new column and the
    landing COPY failed (column "region" of relation "address_landed" does not exist) on every try.
    With it, the extract reconciles first, by the same policy, and keeps DDL off the table until
    its transaction ends."""
    source, warehouse = both
    timeout = timedelta(seconds=30)
    [spec] = drift.check("totesys_db", "warehouse_db", timeout, [ADDRESS.to_dict()], "w0", _Run)
    with psycopg.connect(pg_database) as extract:
        drift.hold(extract, "warehouse_db", timeout, spec, "w1", _Run)  # unchanged: nothing to do
        extract.rollback()
        source.execute("ALTER TABLE address ADD COLUMN region varchar(40)")
        drift.hold(extract, "warehouse_db", timeout, spec, "w1", _Run)
        assert landed_columns(warehouse, "address")["region"] == ("character varying(40)", True)
        with psycopg.connect(pg_database, autocommit=True) as app:
            app.execute("SET lock_timeout = '200ms'")
            with pytest.raises(psycopg.errors.LockNotAvailable):
                app.execute("ALTER TABLE address ADD COLUMN zone text")  # held off until the extract ends
    logged = warehouse.execute(
        "SELECT table_name, column_name, change, action, window_name FROM staging.schema_changes"
    ).fetchall()
    assert logged == [("address", "region", "added", "carry", "w1")]
    [message] = [
        json.loads(m["Message"]) for m in read_messages(aws["session"], aws["queues"][NOTIFICATIONS_INBOX])
    ]
    assert (message["table"], message["column"], message["window"]) == ("address", "region", "w1")


SALES_ORDER = TableSpec("sales_order", "sales_order_id", "last_updated")


def test_a_retype_made_before_there_was_a_reference_is_still_widened_never_rounded(both):
    """The runbook's reset (or the first check after migration 003): no accepted schema, so the
    live types were taken as they are, and numeric(12,3) went on landing into numeric(10,2),
    rounded (found by review: `reconcile` returned [] and the landing stayed numeric(10,2)). Now
    the landing column itself is compared: the retype is a widening from it, and carried."""
    source, warehouse = both
    source.execute("ALTER TABLE sales_order ALTER COLUMN unit_price TYPE numeric(12,3)")
    [decided] = reconcile(both, "w0", [SALES_ORDER])
    assert decided["action"] == "carry", decided
    assert "sales_order.unit_price: widening retype (numeric(10,2) → numeric(12,3))" in decided["change"]
    assert landed_columns(warehouse, "sales_order")["unit_price"] == ("numeric(12,3)", False)
    assert reconcile(both, "w1", [SALES_ORDER]) == []


def test_a_column_dropped_and_added_back_wider_widens_its_landing_column(both):
    """Found by review: the re-added column's landing column still existed, so nothing was altered
    and varchar(40) values went into the varchar(10) left behind (a COPY error every run)."""
    source, warehouse = both
    reconcile(both, "w0")
    source.execute("ALTER TABLE address ADD COLUMN region varchar(10)")
    reconcile(both, "w1")
    source.execute("ALTER TABLE address DROP COLUMN region")
    reconcile(both, "w2")
    source.execute("ALTER TABLE address ADD COLUMN region varchar(40)")
    decided = [d["change"] for d in reconcile(both, "w3")]
    assert decided == [
        "address.region: added (- → character varying(40))",
        "address.region: widening retype (character varying(10) → character varying(40))",
    ], decided
    assert landed_columns(warehouse, "address")["region"] == ("character varying(40)", True)


def test_a_column_the_landing_table_lacks_is_added_whatever_the_accepted_schema_says(both):
    """An accepted schema that names a column the landing table lacks (the landing table made
    before the column was accepted, or restored from a backup): the column is added, not left for
    a COPY that cannot find it."""
    source, warehouse = both
    source.execute("ALTER TABLE address ADD COLUMN region varchar(40)")
    reconcile(both, "w0")
    # As a restore from before the column would have it (its views go with it: not needed here).
    warehouse.execute("ALTER TABLE staging.address_landed DROP COLUMN region CASCADE")
    warehouse.commit()
    [decided] = reconcile(both, "w1")
    assert decided["change"] == "address.region: added (- → character varying(40))"
    assert landed_columns(warehouse, "address")["region"] == ("character varying(40)", True)


def test_a_not_null_dropped_from_a_column_a_not_null_star_column_holds_stops_the_run(db):
    """Found by review: address.city NOT NULL → NULL was carried, and the first NULL city then
    failed model_dimensions on dim_location.city (NOT NULL), after landing, with no log row; every
    later run too. Now it stops before anything lands, naming the star column."""
    made, plan = decisions(db, "ALTER TABLE address ALTER COLUMN city DROP NOT NULL")
    assert made == [("city", "fail", None, False)]
    [failure] = plan.failures
    assert "dim_location.city" in failure.message and "NOT NULL" in failure.message, failure.message
    relaxed, _ = decisions(db, "ALTER TABLE address ALTER COLUMN address_line_2 SET NOT NULL")
    assert relaxed == [("address_line_2", "carry", None, False)], "a stricter source needs nothing"


def test_a_run_that_waited_for_the_lock_compares_what_the_source_has_now(both, pg_database, aws):
    """Found by review: check_drift read the source, then waited for another run's lock; the
    other run accepted a column meanwhile, and this one compared its stale read with it: a bogus
    'dropped', the accepted schema set back, then 'added' again (three log rows, three messages,
    for one change). The live schema is now read once the lock is held."""
    import threading

    source, warehouse = both
    timeout = timedelta(seconds=30)
    drift.check("totesys_db", "warehouse_db", timeout, [ADDRESS.to_dict()], "w0", _Run)
    warehouse.execute("SELECT pg_advisory_lock(hashtext('conveyor.totesys.drift'))")  # another run's
    warehouse.commit()
    result = {}
    waiting = threading.Thread(
        target=lambda: result.update(
            specs=drift.check("totesys_db", "warehouse_db", timeout, [ADDRESS.to_dict()], "w1", _Run)
        )
    )
    waiting.start()
    deadline = datetime.now(UTC) + timedelta(seconds=8)
    while not warehouse.execute(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
    ).fetchone()[0]:
        assert datetime.now(UTC) < deadline, "the check never waited for the lock"
        warehouse.commit()
    warehouse.commit()
    source.execute("ALTER TABLE address ADD COLUMN region varchar(40)")  # while it waits
    warehouse.execute("SELECT pg_advisory_unlock(hashtext('conveyor.totesys.drift'))")
    warehouse.commit()
    waiting.join(timeout=60)
    logged = warehouse.execute(
        "SELECT column_name, change, window_name FROM staging.schema_changes"
    ).fetchall()
    assert logged == [("region", "added", "w1")], logged
    [spec] = result["specs"]
    assert "region" in [c[0] for c in spec[drift.ACCEPTED]["columns"]], "it passes on what it compared"


def test_a_table_the_config_adds_or_removes_is_logged_once_and_its_rows_are_kept(both):
    source, warehouse = both
    reconcile(both, "w0")
    source.execute(
        "CREATE TABLE promotion (promotion_id serial PRIMARY KEY, code text, last_updated timestamp)"
    )
    promotion = TableSpec("promotion", "promotion_id", "last_updated")
    added = reconcile(both, "w1", [*SPECS, promotion])
    assert [d["change"] for d in added] == ["promotion: table added (the tables config)"]
    warehouse.execute(
        "CREATE TABLE staging.promotion_landed (promotion_id integer, code text, last_updated timestamp)"
    )
    warehouse.execute("INSERT INTO staging.promotion_landed VALUES (1, 'SPRING', NULL)")  # as a landing would
    warehouse.commit()
    removed = reconcile(both, "w2", [SPECS[0]])  # department and promotion leave the config
    assert [(d["change"], d["warning"]) for d in removed] == [
        ("department: table removed (the tables config)", True),
        ("promotion: table removed (the tables config)", True),
    ]
    assert reconcile(both, "w3", [SPECS[0]]) == [], "said once"
    assert warehouse.execute("SELECT * FROM staging.promotion_landed").fetchall() == [(1, "SPRING", None)]
    logged = warehouse.execute(
        "SELECT table_name, column_name, change, window_name FROM staging.schema_changes ORDER BY change_id"
    ).fetchall()
    assert logged == [
        ("promotion", None, "table_added", "w1"),
        ("department", None, "table_removed", "w2"),
        ("promotion", None, "table_removed", "w2"),
    ]
    assert reconcile(both, "w4", [*SPECS, promotion]) == [], "added back: compared with its landing table"


def test_a_column_the_source_lost_before_the_first_check_is_still_a_drop(both):
    """No accepted schema yet: a landing column the source lacks was dropped (the star reads it)."""
    source, warehouse = both
    source.execute("ALTER TABLE address DROP COLUMN district")
    with pytest.raises(drift.SchemaDriftError, match=r"address.district: dropped \(text → -\): a star model"):
        reconcile(both, "w1")
    warehouse.rollback()
    accepted = warehouse.execute("SELECT count(*) FROM staging.source_schemas").fetchone()
    assert accepted == (0,), "nothing accepted while a change fails"


def test_a_change_another_run_is_sending_is_skipped_and_every_change_is_sent_once(
    both, warehouse_dsn, aws, monkeypatch
):
    """Two runs publish at once (a backfill beside the scheduled run): the row one is sending is
    locked, so the other skips it instead of sending it too; what is left is sent by the next call."""
    source, warehouse = both
    monkeypatch.setenv("AIRFLOW_VAR_CONVEYOR_NOTIFICATIONS_TOPIC_ARN", aws["topics"]["notifications"])
    reconcile(both, "w0")
    source.execute("ALTER TABLE department ADD COLUMN cost_centre integer")
    source.execute("ALTER TABLE department ADD COLUMN budget_code text")
    reconcile(both, "w1")
    warehouse.commit()
    with psycopg.connect(warehouse_dsn) as sending:  # the other run, between its publish and its mark
        sending.execute("SELECT 1 FROM staging.schema_changes WHERE column_name = 'cost_centre' FOR UPDATE")
        assert drift_notices.publish_pending(warehouse, "totesys_etl", "backfill") == 1
    assert [m["column"] for _, m in drift_messages(inbox(aws))] == ["budget_code"]
    assert drift_notices.publish_pending(warehouse, "totesys_etl", "scheduled") == 1
    assert drift_notices.publish_pending(warehouse, "totesys_etl", "next") == 0
    assert [m["column"] for _, m in drift_messages(inbox(aws))] == ["cost_centre"]
    marks = warehouse.execute(
        "SELECT column_name, notified_by, message_id IS NOT NULL FROM staging.schema_changes ORDER BY 1"
    ).fetchall()
    assert marks == [("budget_code", "backfill", True), ("cost_centre", "scheduled", True)]
