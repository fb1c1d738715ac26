"""Retail inbound fan-out: copy every version of each inbound file to the archive and the newest to
stage, verify the copies, and only then delete those versions from inbound.

Everything is done on exact object versions (the buckets are versioned): the versions listed are
the versions copied and the versions deleted. A file uploaded twice between two runs has two
versions: both reach the archive, each under its own key dated by its arrival (S3's
LastModified), and the newest goes to stage. A file re-uploaded while a run works on it is a new
version, which stays in inbound for the next run; no version is ever deleted before its archive
copy (and, for the newest, its stage copy) is verified.

What is moved is what is in inbound when the run lists it, whatever interval the run is for, so
the archive is dated by arrival, never by the run: a run of any interval archives a file under the
same key. A version that is already gone when the run copies it was moved by another run (a retry
of a run, or two runs listing the same files): its archive copy is checked and nothing is redone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

from conveyor.keys import day_partition
from conveyor.s3 import CopyRequest, S3Object, copy_objects, s3_error_code

INBOUND_PREFIXES = ("user/", "transactions/")
BACKFILL = "backfill"  # a DagRun's run_type
NOT_BACKFILLABLE = (
    "inbound_to_stage moves the files that are in the inbound bucket now (each archived under the "
    "date it arrived), whatever interval a run is for: a run of a past interval would not find that "
    "interval's files, which earlier runs already moved. It cannot be backfilled. To move what is in "
    "inbound now, trigger a manual run (or wait for the next scheduled one); to load a past day "
    "again, copy its files from the archive bucket (<folder>/year=YYYY/month=MM/day=DD/) to stage."
)
_GONE = {"404", "NoSuchKey", "NoSuchVersion"}  # a source version that no longer exists


class InboundNotVersioned(RuntimeError):
    """The inbound bucket has no versioning, so a file cannot be deleted by exact version."""


class NotBackfillable(RuntimeError):
    """A backfill run of inbound_to_stage: it acts on inbound as it is now, not on an interval."""


def refuse_backfill(run_type: str) -> None:
    """Raise NotBackfillable for a backfill run (Airflow refuses to create one, through the DAG's
    `allowed_run_types`; runs created before that still get here)."""
    if str(run_type) == BACKFILL:
        raise NotBackfillable(NOT_BACKFILLABLE)


@dataclass(frozen=True)
class InboundVersion:
    """One stored version of an inbound file and where the archive keeps it."""

    source: S3Object  # bucket, key, size and VersionId
    arrived: datetime  # S3's LastModified: when this version was stored
    archive_key: str


@dataclass(frozen=True)
class InboundFile:
    """A file under a retail prefix: every version listed, newest first."""

    versions: tuple[InboundVersion, ...]

    @property
    def key(self) -> str:
        return self.versions[0].source.key

    @property
    def current(self) -> InboundVersion:
        return self.versions[0]

    def to_dict(self) -> dict:
        return {
            "key": self.key,
            "versions": [
                {
                    "version_id": v.source.version_id,
                    "size": v.source.size,
                    "arrived": v.arrived.isoformat(),
                    "archive_key": v.archive_key,
                }
                for v in self.versions
            ],
        }

    @classmethod
    def from_dict(cls, bucket: str, d: dict) -> InboundFile:
        return cls(
            tuple(
                InboundVersion(
                    S3Object(bucket, d["key"], v["size"], v["version_id"]),
                    datetime.fromisoformat(v["arrived"]),
                    v["archive_key"],
                )
                for v in d["versions"]
            )
        )


def archive_key(key: str, arrived: datetime, version_id: str, ordinal: int = 0) -> str:
    """`user/a.csv` -> `user/year=YYYY/month=MM/day=DD/<YYYYMMDDTHHMMSS>Z-<n>_<version id>_a.csv`.

    Dated by the version's arrival (UTC); the name keeps the file's name and extension and starts
    with its arrival, so a folder lists a file's versions in the order they arrived. S3 records
    arrival to the second: `n` orders the versions of one file that arrived in the same second
    (0 the oldest), and the version id (URL-quoted: it may hold `/` or `+`) tells them apart.
    """
    folder, _, rest = key.partition("/")
    directory, _, name = rest.rpartition("/")
    moment = arrived.astimezone(UTC)
    stamped = f"{moment:%Y%m%dT%H%M%S}Z-{ordinal}_{quote(version_id, safe='')}_{name}"
    return "/".join(p for p in (folder, day_partition(moment.date()), directory, stamped) if p)


def require_versioning(s3, bucket: str) -> None:
    status = s3.get_bucket_versioning(Bucket=bucket).get("Status")
    if status != "Enabled":
        raise InboundNotVersioned(
            f"bucket {bucket!r} has versioning {status or 'never enabled'}: inbound_to_stage copies and "
            "deletes exact object versions, so a file re-uploaded mid-run is never lost. Enable "
            "versioning (Terraform and `make services` do)."
        )


def _with_archive_keys(key: str, listed: list[tuple[S3Object, datetime]]) -> InboundFile:
    """`listed`: a key's versions newest first (S3's order), which also orders same-second ones."""
    versions: list[InboundVersion] = []
    seconds_seen: dict[datetime, int] = {}
    for source, arrived in reversed(listed):  # oldest first: the first of a second is 0
        second = arrived.astimezone(UTC).replace(microsecond=0)
        ordinal = seconds_seen[second] = seconds_seen.get(second, -1) + 1
        versions.append(
            InboundVersion(source, arrived, archive_key(key, arrived, source.version_id, ordinal))
        )
    return InboundFile(tuple(reversed(versions)))


def list_inbound(s3, bucket: str) -> list[InboundFile]:
    """Every file under the retail prefixes, with all its versions (newest first).

    Folder markers are not files. A key whose latest entry is a delete marker was deleted on
    purpose: it is not a file to move, and its older versions are left where they are.
    """
    require_versioning(s3, bucket)
    listed: dict[str, list[tuple[S3Object, datetime]]] = {}
    deleted: set[str] = set()
    paginator = s3.get_paginator("list_object_versions")
    for prefix in INBOUND_PREFIXES:
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            # S3 lists a key's versions newest first; the latest entry has IsLatest.
            for marker in page.get("DeleteMarkers", []):
                if marker.get("IsLatest"):
                    deleted.add(marker["Key"])
            for item in page.get("Versions", []):
                key = item["Key"]
                if key.endswith("/") and item["Size"] == 0:
                    continue
                listed.setdefault(key, []).append(
                    (S3Object(bucket, key, item["Size"], item["VersionId"]), item["LastModified"])
                )
    return [_with_archive_keys(key, listed[key]) for key in sorted(listed) if key not in deleted]


def _copy_verified(s3, source: S3Object, bucket: str, key: str) -> str | None:
    """None when `bucket/key` holds a complete copy of `source`, else why not."""
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except s3.exceptions.ClientError as exc:
        return f"s3://{bucket}/{key} missing ({s3_error_code(exc)})"
    if head["ContentLength"] != source.size:
        return f"s3://{bucket}/{key} has {head['ContentLength']} bytes, source {source.size}"
    return None


def _gone(s3, source: S3Object) -> bool:
    """True when the listed version no longer exists in inbound."""
    try:
        s3.head_object(Bucket=source.bucket, Key=source.key, VersionId=source.version_id)
    except s3.exceptions.ClientError as exc:
        return s3_error_code(exc) in _GONE  # any other error: the copy's own error is reported
    return False


def stage_and_archive(s3, files: list[InboundFile], stage: str, archive: str, **copy_options) -> dict:
    """Copy every listed version to its archive key and each file's newest version to stage,
    verify, then delete from inbound exactly the versions whose copies are verified.

    A version is deleted only with every older listed version of its file (deleting a newer one
    while an older one stays would make the older one current, and the next run would stage it
    over the newer) and with every version stored in the same second (archive names number
    those, so a later run must see the same group). Older versions go first, the newest last.

    Returns counts and keys: `moved` files staged and removed from inbound (`bytes`), `archived`
    versions removed from inbound, `kept` (versions still in inbound because a copy of theirs, or
    of an older version of their file, is not verified: each with its problems), `already_moved`
    (gone from inbound, their archive copy verified: another run moved them) and `vanished` (gone
    from inbound and not in the archive: deleted by someone else before this run copied them).
    """
    requests = []
    for file in files:
        requests.append(CopyRequest(file.current.source, stage, file.key))
        requests += [CopyRequest(v.source, archive, v.archive_key) for v in file.versions]
    failed: dict[tuple[str, str | None], list[str]] = {}
    for result in copy_objects(s3, requests, **copy_options):
        if not result.ok:
            request = result.request
            failed.setdefault((request.source.key, request.source.version_id), []).append(
                f"copy to s3://{request.target_bucket}/{request.target_key} failed: {result.error}"
            )

    kept, already_moved, vanished = [], [], []
    older: list[InboundVersion] = []  # verified non-current versions, deleted first
    newest: dict[InboundVersion, list[InboundVersion]] = {}  # verified current -> its older ones
    for file in files:
        deletable = _deletable(s3, file, failed, stage, archive, kept, already_moved, vanished)
        if deletable and deletable[-1] is file.current:
            newest[file.current] = deletable[:-1]
            deletable = deletable[:-1]
        older += deletable

    bucket = files[0].current.source.bucket if files else ""
    deleted = _delete_versions(s3, bucket, older, kept)
    ready = [v for v, before in newest.items() if all(o in deleted for o in before)]
    for version in newest:
        if version not in ready:
            kept.append(
                {
                    "key": version.source.key,
                    "version_id": version.source.version_id,
                    "problems": ["an older version of the file could not be deleted, so this one stays"],
                }
            )
    deleted |= _delete_versions(s3, bucket, ready, kept)
    moved = [v for v in ready if v in deleted]
    archived = [v for v in (*older, *ready) if v in deleted]
    return {
        "moved": len(moved),
        "archived": len(archived),
        "bytes": sum(v.source.size for v in moved),
        "archived_bytes": sum(v.source.size for v in archived),
        "stage_keys": [v.source.key for v in moved],
        "archive_keys": [v.archive_key for v in archived],
        "kept": kept,
        "already_moved": already_moved,
        "vanished": vanished,
    }


def _second(version: InboundVersion) -> datetime:
    return version.arrived.astimezone(UTC).replace(microsecond=0)


def _deletable(s3, file: InboundFile, failed: dict, stage: str, archive: str, kept, already_moved, vanished):
    """The file's versions that may be deleted, oldest first: those whose copies are verified, up
    to the first one that is not. The others are added to `kept`, with why.

    A version stays with the older one kept before it (deleting it would make the older one
    current), and so does every version stored in the same second as a kept one: archive names
    number the versions of one second, so such a group is moved whole or not at all.
    """
    deletable: list[InboundVersion] = []
    blocker: InboundVersion | None = None
    for version in reversed(file.versions):  # oldest first
        source = version.source
        problems = failed.get((source.key, source.version_id))
        if problems and _gone(s3, source):
            if _copy_verified(s3, source, archive, version.archive_key) is None:
                already_moved.append(version.archive_key)
            else:
                vanished.append(f"{source.key} version {source.version_id}")
            continue
        if not problems:
            checks = [_copy_verified(s3, source, archive, version.archive_key)]
            if version is file.current:
                checks.append(_copy_verified(s3, source, stage, source.key))
            problems = [p for p in checks if p]
        if blocker and not problems:
            problems = [f"an older version ({blocker.source.version_id}) is kept, so this one stays after it"]
        if not problems:
            deletable.append(version)
            continue
        kept.append({"key": source.key, "version_id": source.version_id, "problems": problems})
        if blocker is None:
            blocker = version
            same_second = [v for v in deletable if _second(v) == _second(version)]
            for v in same_second:
                kept.append(
                    {
                        "key": v.source.key,
                        "version_id": v.source.version_id,
                        "problems": [
                            f"stored in the same second as version {source.version_id}, which is kept: "
                            "it stays with it"
                        ],
                    }
                )
            deletable = [v for v in deletable if v not in same_second]
    return deletable


def _delete_versions(s3, bucket: str, versions: list[InboundVersion], kept: list) -> set[InboundVersion]:
    """Delete exactly these versions; returns those gone. A failure is added to `kept`."""
    deleted: set[InboundVersion] = set()
    for start in range(0, len(versions), 1000):  # DeleteObjects takes at most 1,000 keys
        batch = versions[start : start + 1000]
        response = s3.delete_objects(
            Bucket=bucket,
            Delete={
                "Objects": [{"Key": v.source.key, "VersionId": v.source.version_id} for v in batch],
                "Quiet": True,
            },
        )
        errors = {(e["Key"], e.get("VersionId")): e for e in response.get("Errors", [])}
        for version in batch:
            error = errors.get((version.source.key, version.source.version_id))
            if error and error.get("Code") not in _GONE:
                problem = f"delete failed: {error.get('Code')} {error.get('Message', '')}".strip()
                kept.append(
                    {
                        "key": version.source.key,
                        "version_id": version.source.version_id,
                        "problems": [problem],
                    }
                )
            else:
                deleted.add(version)
    return deleted
