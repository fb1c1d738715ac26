"""Where a run's config comes from: exactly the values docs/settings.md and the pipeline pages
document, and a clear error for anything else (a value is never taken for a local path)."""

from __future__ import annotations

import json

import pytest

from conveyor import config
from conveyor.config import ConfigError

BUCKET = "conveyor-local-source"
DOC = {"datasets": [{"name": "from-s3"}]}


@pytest.fixture
def s3(aws):
    client = aws["session"].client("s3")
    client.put_object(Bucket=BUCKET, Key="cfg/ingest.json", Body=json.dumps(DOC).encode())
    return client


@pytest.fixture
def default(tmp_path):
    path = tmp_path / "default.json"
    path.write_text('{"datasets": [{"name": "default"}]}')
    return path


def read(s3, default, **values):
    return config.config_text(s3, default=default, variable_name="my_config", **values)


def test_without_param_or_variable_the_default_file_is_used(s3, default):
    assert read(s3, default) == (default.read_text(), str(default))
    assert read(s3, default, variable="  ") == (default.read_text(), str(default))


def test_the_variable_may_hold_an_s3_uri_or_the_json_itself(s3, default):
    text, origin = read(s3, default, variable=f"s3://{BUCKET}/cfg/ingest.json")
    assert (json.loads(text), origin) == (DOC, f"s3://{BUCKET}/cfg/ingest.json")
    pasted = '\n  {"datasets": [{"name": "pasted"}]}\n'
    text, origin = read(s3, default, variable=pasted)
    assert json.loads(text)["datasets"][0]["name"] == "pasted"
    assert origin == "Variable my_config (inline JSON)"


def test_the_param_wins_over_the_variable(s3, default):
    text, origin = read(s3, default, variable='{"datasets": []}', uri=f"s3://{BUCKET}/cfg/ingest.json")
    assert (json.loads(text), origin) == (DOC, f"s3://{BUCKET}/cfg/ingest.json")


@pytest.mark.parametrize(
    "value",
    [
        f"{BUCKET}/cfg/ingest.json",
        "/usr/local/airflow/dags/include/config/x.json",
        "https://example.com/c.json",
    ],
    ids=["bucket-slash-key", "local-path", "https"],
)
def test_any_other_variable_value_is_refused_saying_what_is_accepted(s3, default, value):
    with pytest.raises(ConfigError) as raised:
        read(s3, default, variable=value)
    message = str(raised.value)
    assert message.startswith("Variable my_config must hold s3://bucket/key or the config's JSON document")
    assert repr(value) in message
    assert "No such file" not in message


@pytest.mark.parametrize("value", [f"{BUCKET}/cfg/ingest.json", "s3://bucket-only/", '{"datasets": []}'])
def test_the_param_must_be_an_s3_uri(s3, default, value):
    with pytest.raises(
        ConfigError, match=r"Param config_uri: .* is not an S3 URI of the form s3://bucket/key"
    ):
        read(s3, default, uri=value)


def test_the_param_pattern_lets_the_trigger_form_refuse_what_the_task_would(s3, default):
    import re

    pattern = re.compile(config.S3_URI_PATTERN)
    assert pattern.match(f"s3://{BUCKET}/cfg/ingest.json")
    assert not pattern.match(f"{BUCKET}/cfg/ingest.json")


def test_unreadable_s3_objects_are_config_errors_naming_them(s3, default):
    with pytest.raises(
        ConfigError, match=rf"Variable my_config: s3://{BUCKET}/nope.json cannot be read: NoSuchKey"
    ):
        read(s3, default, variable=f"s3://{BUCKET}/nope.json")
    s3.put_object(Bucket=BUCKET, Key="cfg/latin1.json", Body=b'{"x": "\xe9"}')
    with pytest.raises(ConfigError, match="is not UTF-8 text"):
        read(s3, default, uri=f"s3://{BUCKET}/cfg/latin1.json")


def test_bad_json_says_where_it_came_from():
    with pytest.raises(ConfigError, match=r"^Variable x \(inline JSON\): not valid JSON: .* line 1 column 2"):
        config.load_json("{oops", "Variable x (inline JSON)")
