"""Config validation, dataset selection and target-key building for the nightly ingestion."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from conveyor.config import ConfigError
from conveyor.keys import utc_date
from conveyor.nightly import ingest as ingestion
from conveyor.nightly.ingest import Dataset

GOOD = {
    "name": "movies",
    "source_bucket": "acme-source",
    "source_prefix": "movielens/movies/",
    "target_bucket": "acme-raw",
    "target_prefix": "/landing/",
}


def config(*datasets) -> str:
    return json.dumps({"datasets": list(datasets)})


def test_parse_config_normalises_prefixes():
    [dataset] = ingestion.parse_config(config(GOOD))
    assert dataset == Dataset("movies", "acme-source", "movielens/movies", "acme-raw", "landing")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON: Expecting property name enclosed in double quotes at line 1 column 2"),
        ("[]", 'expected an object with a "datasets" list'),
        (json.dumps({"datasets": []}), '"datasets" is empty'),
        (json.dumps({"datasets": ["movies"]}), "dataset #1: expected an object, got str"),
        (
            config({k: v for k, v in GOOD.items() if k != "target_bucket"}),
            "dataset 'movies': missing field 'target_bucket'",
        ),
        (config({**GOOD, "source_prefx": "x"}), "dataset 'movies': unknown field(s) source_prefx"),
        (
            config({**GOOD, "source_prefix": 7}),
            "dataset 'movies': field 'source_prefix' must be a string, got int",
        ),
        (
            config({**GOOD, "target_bucket": "Bad_Bucket"}),
            "dataset 'movies': field 'target_bucket': 'Bad_Bucket' is not a valid bucket name",
        ),
        (config({**GOOD, "name": "a/b"}), "dataset 'a/b': field 'name' must be letters, digits"),
        (config({k: v for k, v in GOOD.items() if k != "name"}), "dataset #1: missing field 'name'"),
        (config(GOOD, GOOD), "dataset name(s) used more than once: movies"),
    ],
    ids=[
        "bad-json",
        "not-object",
        "empty",
        "entry-not-object",
        "missing-field",
        "unknown-field",
        "wrong-type",
        "bad-bucket",
        "bad-name",
        "no-name",
        "duplicate",
    ],
)
def test_parse_config_rejects_with_dataset_and_field(text, message):
    with pytest.raises(ConfigError) as raised:
        ingestion.parse_config(text, origin="cfg.json")
    assert str(raised.value).startswith("cfg.json: ")
    assert message in str(raised.value)


def _target(**fields) -> dict:
    return {**GOOD, "source_bucket": "conveyor-local-source", "target_bucket": "conveyor-local-raw", **fields}


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        (
            [_target(target_prefix="events")],
            "dataset 'movies': field 'target_prefix' ('events'): its copies would land under "
            "s3://conveyor-local-raw/events/movies/, inside events/ of the raw bucket, whose new objects "
            "are announced on the conveyor-local-raw-events topic",
        ),
        (
            [_target(name="events", target_prefix="")],
            "dataset 'events': field 'target_prefix' (''): its copies would land under "
            "s3://conveyor-local-raw/events/, inside events/ of the raw bucket",
        ),
        (
            [_target(target_prefix="/events/nightly/")],
            "dataset 'movies': field 'target_prefix' ('events/nightly'): its copies would land under "
            "s3://conveyor-local-raw/events/nightly/movies/, inside events/",
        ),
        (
            [_target(target_bucket="conveyor-local-curated", target_prefix="events")],
            "inside events/ of the curated bucket, whose new objects are announced on the "
            "conveyor-local-curated-events topic",
        ),
        (
            [_target(target_bucket="conveyor-local-stage", target_prefix="user")],
            "inside user/ of the stage bucket",
        ),
        (
            [_target(target_bucket="conveyor-local-source", target_prefix="movielens")],
            "dataset 'movies': field 'target_prefix' ('movielens'): its copies would land under "
            "s3://conveyor-local-source/movielens/movies/, which overlaps its own source "
            "s3://conveyor-local-source/movielens/movies/: every night would copy the earlier nights' copies again",
        ),
        (
            [_target(target_bucket="conveyor-local-source", target_prefix="movielens/movies/copies")],
            "overlaps its own source s3://conveyor-local-source/movielens/movies/",
        ),
        (
            [_target(source_prefix="", target_bucket="conveyor-local-source", target_prefix="copies")],
            "s3://conveyor-local-source/copies/movies/, which overlaps its own source s3://conveyor-local-source/:",
        ),
        (
            [_target(source_prefix="landing/movies/year=2024", target_bucket="conveyor-local-source")],
            "overlaps its own source s3://conveyor-local-source/landing/movies/year=2024/",
        ),
        (
            [
                _target(name="first", target_bucket="acme-shared", target_prefix="copies"),
                _target(name="second", source_bucket="acme-shared", source_prefix="copies"),
            ],
            "dataset 'first': field 'target_prefix' ('copies'): its copies would land under "
            "s3://acme-shared/copies/first/, which overlaps dataset 'second''s source s3://acme-shared/copies/",
        ),
    ],
    ids=[
        "raw-events",
        "raw-events-by-name",
        "inside-raw-events",
        "curated-events",
        "stage-user",
        "target-is-source",
        "target-inside-source",
        "whole-bucket-source",
        "source-inside-target",
        "another-datasets-source",
    ],
)
def test_a_target_that_feeds_events_or_its_source_is_refused_naming_dataset_and_field(entries, message):
    with pytest.raises(ConfigError) as raised:
        ingestion.parse_config(config(*entries), origin="cfg.json")
    assert str(raised.value).startswith("cfg.json: ")
    assert message in str(raised.value)


@pytest.mark.parametrize(
    "entry",
    [
        _target(target_prefix="landing"),
        _target(target_prefix="eventsarchive"),  # not under events/
        _target(target_prefix="event", name="s"),  # event/s/ is not events/
        _target(target_bucket="conveyor-local-source", target_prefix="copies"),  # beside its source
        _target(source_prefix="data", target_bucket="conveyor-local-source", target_prefix="database"),
    ],
    ids=["landing", "events-lookalike", "split-name", "beside-source", "prefix-lookalike"],
)
def test_targets_outside_events_and_their_source_are_accepted(entry):
    assert len(ingestion.parse_config(config(entry))) == 1


def test_the_events_check_uses_the_environments_bucket_names():
    from conveyor.resources import ResourceNames

    entry = _target(target_bucket="conveyor-prod-raw", target_prefix="events")
    assert len(ingestion.parse_config(config(entry))) == 1  # not this environment's raw bucket
    with pytest.raises(ConfigError, match="inside events/ of the raw bucket"):
        ingestion.parse_config(config(entry), names=ResourceNames("conveyor-prod"))


def test_select_datasets():
    datasets = ingestion.parse_config(config(GOOD, {**GOOD, "name": "ratings"}))
    assert [d.name for d in ingestion.select_datasets(datasets, [])] == ["movies", "ratings"]
    assert [d.name for d in ingestion.select_datasets(datasets, ["ratings"])] == ["ratings"]
    with pytest.raises(ConfigError, match=r"'tags' not in the config; known: movies, ratings"):
        ingestion.select_datasets(datasets, ["tags"])


def test_transfer_date_is_the_utc_date_of_the_interval_end():
    assert utc_date(datetime(2024, 3, 5, 20, 0, tzinfo=UTC)) == date(2024, 3, 5)
    # 01:30 on the 6th in UTC+3 is still the 5th in UTC.
    assert utc_date(datetime(2024, 3, 6, 1, 30, tzinfo=timezone(timedelta(hours=3)))) == date(2024, 3, 5)
    with pytest.raises(ValueError, match="timezone-aware"):
        utc_date(datetime(2024, 3, 5, 20, 0))


@pytest.mark.parametrize(
    ("source_prefix", "target_prefix", "key", "expected"),
    [
        (
            "movielens/movies",
            "landing",
            "movielens/movies/movies.csv",
            "landing/movies/year=2024/month=03/day=05/movies.csv",
        ),
        (
            "movielens/movies",
            "landing",
            "movielens/movies/a b/ünï côde/x+y.csv",
            "landing/movies/year=2024/month=03/day=05/a b/ünï côde/x+y.csv",
        ),
        ("", "landing", "top.csv", "landing/movies/year=2024/month=03/day=05/top.csv"),
        ("movielens/movies", "", "movielens/movies/m.csv", "movies/year=2024/month=03/day=05/m.csv"),
    ],
    ids=["plain", "spaces-unicode-nested", "whole-bucket", "no-target-prefix"],
)
def test_target_key(source_prefix, target_prefix, key, expected):
    dataset = Dataset("movies", "acme-source", source_prefix, "acme-raw", target_prefix)
    assert ingestion.target_key(dataset, key, date(2024, 3, 5)) == expected


def test_target_key_refuses_keys_outside_the_prefix():
    dataset = Dataset("movies", "acme-source", "movielens/movies", "acme-raw", "landing")
    with pytest.raises(ValueError, match="not under source_prefix"):
        # A sibling folder sharing the prefix's first characters is not part of the dataset.
        ingestion.target_key(dataset, "movielens/movies_old/m.csv", date(2024, 3, 5))


def test_check_buckets_names_the_dataset_and_field(aws):
    s3 = aws["session"].client("s3")
    ok = Dataset("movies", "conveyor-local-source", "", "conveyor-local-raw", "landing")
    ingestion.check_buckets(s3, [ok])
    missing = Dataset("ratings", "conveyor-local-source", "", "acme-no-such-bucket", "landing")
    with pytest.raises(
        ConfigError,
        match="dataset 'ratings': field 'target_bucket': bucket 'acme-no-such-bucket' does not exist",
    ):
        ingestion.check_buckets(s3, [ok, missing])
