"""Nightly file ingestion: config-driven server-side copies from source buckets to raw buckets.

Config format (JSON):

    {"datasets": [{"name": "movies",
                   "source_bucket": "conveyor-local-source", "source_prefix": "movielens/movies",
                   "target_bucket": "conveyor-local-raw",    "target_prefix": "landing"}]}

Every object under `source_prefix` lands at
`<target_prefix>/<name>/year=YYYY/month=MM/day=DD/<key relative to source_prefix>`, the date being
the UTC date of the run's data_interval_end (`keys.utc_date`), so a rerun of an interval writes
the same keys.

A target is refused when its copies would land where bucket notifications announce new objects
(`resources.BUCKET_NOTIFICATIONS`: raw `events/` feeds the event copier and then Snowflake), or
where a dataset's source would read them again (its own or another's: every night would copy the
earlier nights' copies once more).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import date

from conveyor.config import PERMANENT_S3_ERRORS, ConfigError, load_json
from conveyor.keys import day_partition
from conveyor.resources import BUCKET_NOTIFICATIONS, ResourceNames
from conveyor.s3 import CopyRequest, copy_objects, list_objects, s3_error_code

FIELDS = ("name", "source_bucket", "source_prefix", "target_bucket", "target_prefix")
# Dataset names become a key segment: keep them to one safe path segment.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
# S3 bucket naming rules (general purpose buckets).
_BUCKET = re.compile(r"^(?!xn--)(?!.*\.\.)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class IngestionError(RuntimeError):
    """Some objects of a dataset failed to copy; the message names them."""


@dataclass(frozen=True)
class Dataset:
    name: str
    source_bucket: str
    source_prefix: str
    target_bucket: str
    target_prefix: str

    def to_dict(self) -> dict:
        return asdict(self)


def _clean_prefix(value: str) -> str:
    return value.strip("/")


def parse_config(text: str, origin: str = "config", names: ResourceNames | None = None) -> list[Dataset]:
    """Validate the config's JSON text; every problem names the dataset and the field.

    `names`: the environment's resource names (`resources.names_from_variable()` in a task), to
    know which buckets announce new objects; the local stack's by default.
    """
    document = load_json(text, origin)
    if not isinstance(document, dict) or not isinstance(document.get("datasets"), list):
        raise ConfigError(f'{origin}: expected an object with a "datasets" list')
    if not document["datasets"]:
        raise ConfigError(f'{origin}: "datasets" is empty')

    datasets: list[Dataset] = []
    for index, entry in enumerate(document["datasets"]):
        label = f"dataset #{index + 1}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{origin}: {label}: expected an object, got {type(entry).__name__}")
        if isinstance(entry.get("name"), str):
            label = f"dataset {entry['name']!r}"
        unknown = sorted(set(entry) - set(FIELDS))
        if unknown:
            raise ConfigError(
                f"{origin}: {label}: unknown field(s) {', '.join(unknown)}; expected {', '.join(FIELDS)}"
            )
        for field in FIELDS:
            if field not in entry:
                raise ConfigError(f"{origin}: {label}: missing field {field!r}")
            if not isinstance(entry[field], str):
                raise ConfigError(
                    f"{origin}: {label}: field {field!r} must be a string, got {type(entry[field]).__name__}"
                )
        if not _NAME.match(entry["name"]):
            raise ConfigError(
                f"{origin}: {label}: field 'name' must be letters, digits, '_', '.' or '-' "
                "(it becomes a key segment)"
            )
        for field in ("source_bucket", "target_bucket"):
            if not _BUCKET.match(entry[field]):
                raise ConfigError(
                    f"{origin}: {label}: field {field!r}: {entry[field]!r} is not a valid bucket name"
                )
        datasets.append(
            Dataset(
                name=entry["name"],
                source_bucket=entry["source_bucket"],
                source_prefix=_clean_prefix(entry["source_prefix"]),
                target_bucket=entry["target_bucket"],
                target_prefix=_clean_prefix(entry["target_prefix"]),
            )
        )

    given = [d.name for d in datasets]
    duplicated = sorted({n for n in given if given.count(n) > 1})
    if duplicated:
        raise ConfigError(f"{origin}: dataset name(s) used more than once: {', '.join(duplicated)}")
    check_targets(datasets, names or ResourceNames(), origin)
    return datasets


def source_folder(dataset: Dataset) -> str:
    """The key prefix a dataset reads ("" for a whole bucket)."""
    return f"{dataset.source_prefix}/" if dataset.source_prefix else ""


def landing_folder(dataset: Dataset) -> str:
    """The key prefix every copy of a dataset lands under: `<target_prefix>/<name>/`."""
    return "/".join(p for p in (dataset.target_prefix, dataset.name) if p) + "/"


def _overlap(a: str, b: str) -> bool:
    """Key prefixes overlap when one is inside the other."""
    return a.startswith(b) or b.startswith(a)


def check_targets(datasets: list[Dataset], names: ResourceNames, origin: str = "config") -> None:
    """Refuse a target whose copies would be announced downstream, or read again as a source."""
    notified = {
        names.bucket(kind): (kind, topic, prefixes)
        for kind, (topic, prefixes) in BUCKET_NOTIFICATIONS.items()
    }
    for dataset in datasets:
        bucket, landing = dataset.target_bucket, landing_folder(dataset)
        where = f"{origin}: dataset {dataset.name!r}: field 'target_prefix' ({dataset.target_prefix!r})"
        if bucket in notified:
            kind, topic, prefixes = notified[bucket]
            for prefix in prefixes:
                if _overlap(landing, prefix):
                    raise ConfigError(
                        f"{where}: its copies would land under s3://{bucket}/{landing}, inside {prefix} of the "
                        f"{kind} bucket, whose new objects are announced on the {names.topic(topic)} topic "
                        "and taken downstream (the event copier and Snowflake); land them outside "
                        f"{', '.join(prefixes)} (e.g. target_prefix 'landing')"
                    )
        for source in datasets:
            if source.source_bucket == bucket and _overlap(source_folder(source), landing):
                read_by = "its own source" if source is dataset else f"dataset {source.name!r}'s source"
                raise ConfigError(
                    f"{where}: its copies would land under s3://{bucket}/{landing}, which overlaps {read_by} "
                    f"s3://{bucket}/{source_folder(source)}: every night would copy the earlier nights' "
                    "copies again; use a target outside the source (another prefix or bucket)"
                )


def select_datasets(datasets: list[Dataset], wanted: Iterable[str] | None) -> list[Dataset]:
    """The datasets named in `wanted` (all when empty); an unknown name is a ConfigError."""
    wanted = list(wanted or [])
    if not wanted:
        return datasets
    known = {d.name for d in datasets}
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise ConfigError(
            f"requested dataset(s) {', '.join(map(repr, unknown))} not in the config; known: {', '.join(sorted(known))}"
        )
    return [d for d in datasets if d.name in wanted]


def check_buckets(client, datasets: list[Dataset]) -> None:
    """Fail with the dataset and field when a configured bucket does not exist or is not reachable."""
    checked: dict[str, str | None] = {}
    for dataset in datasets:
        for field in ("source_bucket", "target_bucket"):
            bucket = getattr(dataset, field)
            if bucket not in checked:
                try:
                    client.head_bucket(Bucket=bucket)
                    checked[bucket] = None
                except Exception as exc:
                    code = s3_error_code(exc)
                    if code not in PERMANENT_S3_ERRORS:
                        raise
                    checked[bucket] = (
                        "does not exist" if code in ("404", "NoSuchBucket") else f"is not accessible ({code})"
                    )
            if checked[bucket]:
                raise ConfigError(
                    f"dataset {dataset.name!r}: field {field!r}: bucket {bucket!r} {checked[bucket]}"
                )


def partition_prefix(dataset: Dataset, day: date) -> str:
    parts = [dataset.target_prefix, dataset.name, day_partition(day)]
    return "/".join(p for p in parts if p)


def relative_key(dataset: Dataset, source_key: str) -> str:
    if not dataset.source_prefix:
        return source_key
    folder = dataset.source_prefix + "/"
    if not source_key.startswith(folder):
        raise ValueError(f"key {source_key!r} is not under source_prefix {dataset.source_prefix!r}")
    return source_key[len(folder) :]


def target_key(dataset: Dataset, source_key: str, day: date) -> str:
    """Where `source_key` lands for the run dated `day`; its path below source_prefix is kept."""
    return f"{partition_prefix(dataset, day)}/{relative_key(dataset, source_key)}"


def ingest_dataset(client, dataset: Dataset, day: date, **copy_options) -> dict:
    """Copy every object of `dataset` to its dated location; returns counts, raises on any failure.

    Objects that did copy stay in place: a retry or rerun rewrites the same keys.
    """
    folder = f"{dataset.source_prefix}/" if dataset.source_prefix else ""
    requests = [
        CopyRequest(obj, dataset.target_bucket, target_key(dataset, obj.key, day))
        for obj in list_objects(client, dataset.source_bucket, folder)
    ]
    results = copy_objects(client, requests, **copy_options)
    failed = [r for r in results if not r.ok]
    if failed:
        sample = "; ".join(f"{r.request.source.key}: {r.error}" for r in failed[:5])
        more = f" (and {len(failed) - 5} more)" if len(failed) > 5 else ""
        raise IngestionError(
            f"dataset {dataset.name!r}: {len(failed)} of {len(results)} objects failed to copy: {sample}{more}"
        )
    return {
        "name": dataset.name,
        "objects": len(results),
        "bytes": sum(r.size for r in results),
        "target": f"s3://{dataset.target_bucket}/{partition_prefix(dataset, day)}/",
    }
