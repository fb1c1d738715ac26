"""Retail inbound fan-out: copy each inbound file to the stage and archive buckets, verify both
copies, and only then delete it from inbound.

Everything is done on exact object versions (the buckets are versioned): the version listed is
the version copied and the version deleted, together with the older versions it superseded. A
file re-uploaded while a run works on it is a new version, which stays in inbound for the next
run; nothing is ever deleted without two verified copies.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from conveyor.keys import day_partition
from conveyor.s3 import CopyRequest, S3Object, copy_objects, s3_error_code

INBOUND_PREFIXES = ("user/", "transactions/")


class InboundNotVersioned(RuntimeError):
    """The inbound bucket has no versioning, so a file cannot be deleted by exact version."""


@dataclass(frozen=True)
class InboundFile:
    current: S3Object  # with its VersionId
    superseded: tuple[str, ...] = ()  # older version ids of the same key

    def to_dict(self) -> dict:
        o = self.current
        return {
            "key": o.key,
            "size": o.size,
            "version_id": o.version_id,
            "superseded": list(self.superseded),
        }

    @classmethod
    def from_dict(cls, bucket: str, d: dict) -> InboundFile:
        return cls(S3Object(bucket, d["key"], d["size"], d["version_id"]), tuple(d["superseded"]))


def archive_key(key: str, day: date) -> str:
    """`user/a.csv` -> `user/year=YYYY/month=MM/day=DD/a.csv`: the archive is date-partitioned."""
    folder, _, rest = key.partition("/")
    return f"{folder}/{day_partition(day)}/{rest}"


def require_versioning(s3, bucket: str) -> None:
    status = s3.get_bucket_versioning(Bucket=bucket).get("Status")
    if status != "Enabled":
        raise InboundNotVersioned(
            f"bucket {bucket!r} has versioning {status or 'never enabled'}: inbound_to_stage copies and "
            "deletes exact object versions, so a file re-uploaded mid-run is never lost. Enable "
            "versioning (Terraform and `make services` do)."
        )


def list_inbound(s3, bucket: str) -> list[InboundFile]:
    """The current version of every file under the retail prefixes, with the versions it superseded.

    Folder markers and keys whose latest version is a delete marker are not files.
    """
    require_versioning(s3, bucket)
    found: dict[str, InboundFile] = {}
    done: set[str] = set()  # keys whose latest entry was seen (a version or a delete marker)
    paginator = s3.get_paginator("list_object_versions")
    for prefix in INBOUND_PREFIXES:
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            # S3 lists a key's versions and delete markers newest first; the latest has IsLatest.
            for marker in page.get("DeleteMarkers", []):
                if marker.get("IsLatest"):
                    done.add(marker["Key"])
            for item in page.get("Versions", []):
                key = item["Key"]
                if item.get("IsLatest"):
                    done.add(key)
                    if not (key.endswith("/") and item["Size"] == 0):
                        found[key] = InboundFile(S3Object(bucket, key, item["Size"], item["VersionId"]))
                elif key in found:
                    previous = found[key]
                    found[key] = InboundFile(previous.current, (*previous.superseded, item["VersionId"]))
    return [found[key] for key in sorted(found)]


def _copy_verified(s3, source: S3Object, bucket: str, key: str) -> str | None:
    """None when `bucket/key` holds a complete copy of `source`, else why not."""
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except s3.exceptions.ClientError as exc:
        return f"s3://{bucket}/{key} missing ({s3_error_code(exc)})"
    if head["ContentLength"] != source.size:
        return f"s3://{bucket}/{key} has {head['ContentLength']} bytes, source {source.size}"
    return None


def stage_and_archive(
    s3, files: list[InboundFile], stage: str, archive: str, day: date, **copy_options
) -> dict:
    """Copy each file's listed version to stage and archive, verify, then delete that version
    (and the older ones it superseded) from inbound."""
    requests = []
    for file in files:
        requests.append(CopyRequest(file.current, stage, file.current.key))
        requests.append(CopyRequest(file.current, archive, archive_key(file.current.key, day)))
    results = copy_objects(s3, requests, **copy_options)
    errors: dict[str, list[str]] = {}
    for result in results:
        if not result.ok:
            request = result.request
            errors.setdefault(request.source.key, []).append(
                f"copy to s3://{request.target_bucket}/{request.target_key} failed: {result.error}"
            )

    moved, kept = [], []
    for file in files:
        source = file.current
        problems = errors.get(source.key) or [
            p
            for p in (
                _copy_verified(s3, source, stage, source.key),
                _copy_verified(s3, source, archive, archive_key(source.key, day)),
            )
            if p
        ]
        if problems:
            kept.append({"key": source.key, "problems": problems})
        else:
            moved.append(file)

    versions = [
        {"Key": f.current.key, "VersionId": version}
        for f in moved
        for version in (f.current.version_id, *f.superseded)
    ]
    for start in range(0, len(versions), 1000):
        response = s3.delete_objects(
            Bucket=files[0].current.bucket,
            Delete={"Objects": versions[start : start + 1000], "Quiet": True},
        )
        for error in response.get("Errors", []):
            kept.append(
                {
                    "key": error["Key"],
                    "problems": [f"delete of version {error.get('VersionId')} failed: {error.get('Code')}"],
                }
            )
    return {
        "moved": len(moved),
        "bytes": sum(f.current.size for f in moved),
        "stage_keys": [f.current.key for f in moved],
        "archive_keys": [archive_key(f.current.key, day) for f in moved],
        "kept": kept,
    }
