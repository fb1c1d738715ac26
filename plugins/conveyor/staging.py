"""Retail inbound fan-out: copy each inbound file to the stage and archive buckets, verify both
copies, and only then delete it from inbound. A file whose copies are not both verified stays in
inbound for the next run; nothing is ever deleted without two verified copies.
"""

from __future__ import annotations

from datetime import date

from conveyor.copying import CopyRequest, S3Object, copy_objects, list_objects, s3_error_code

INBOUND_PREFIXES = ("user/", "transactions/")


def archive_key(key: str, day: date) -> str:
    """`user/a.csv` -> `user/year=YYYY/month=MM/day=DD/a.csv`: the archive is date-partitioned."""
    folder, _, rest = key.partition("/")
    return f"{folder}/year={day:%Y}/month={day:%m}/day={day:%d}/{rest}"


def has_inbound_files(files: list[dict], **context) -> bool:
    """S3KeySensor check: any object under the retail prefixes."""
    return any(f["Key"].startswith(INBOUND_PREFIXES) for f in files)


def _copy_verified(s3, source: S3Object, bucket: str, key: str) -> str | None:
    """None when `bucket/key` holds a complete copy of `source`, else why not."""
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except s3.exceptions.ClientError as exc:
        return f"s3://{bucket}/{key} missing ({s3_error_code(exc)})"
    if head["ContentLength"] != source.size:
        return f"s3://{bucket}/{key} has {head['ContentLength']} bytes, source {source.size}"
    return None


def _unchanged(s3, source: S3Object) -> bool:
    """The inbound object is still the one we copied (not re-uploaded since the listing)."""
    try:
        return s3.head_object(Bucket=source.bucket, Key=source.key).get("ETag") == source.etag
    except s3.exceptions.ClientError:
        return False


def stage_and_archive(s3, inbound: str, stage: str, archive: str, day: date, **copy_options) -> dict:
    sources = [o for prefix in INBOUND_PREFIXES for o in list_objects(s3, inbound, prefix)]
    requests = []
    for source in sources:
        requests.append(CopyRequest(source, stage, source.key))
        requests.append(CopyRequest(source, archive, archive_key(source.key, day)))
    results = copy_objects(s3, requests, **copy_options)
    errors: dict[str, list[str]] = {}
    for result in results:
        if not result.ok:
            request = result.request
            errors.setdefault(request.source.key, []).append(
                f"copy to s3://{request.target_bucket}/{request.target_key} failed: {result.error}"
            )

    moved, kept = [], []
    for source in sources:
        problems = errors.get(source.key) or [
            p
            for p in (
                _copy_verified(s3, source, stage, source.key),
                _copy_verified(s3, source, archive, archive_key(source.key, day)),
            )
            if p
        ]
        if not problems and not _unchanged(s3, source):
            problems = ["changed in inbound since it was listed; left for the next run"]
        if problems:
            kept.append({"key": source.key, "problems": problems})
        else:
            moved.append(source)

    for start in range(0, len(moved), 1000):
        response = s3.delete_objects(
            Bucket=inbound,
            Delete={"Objects": [{"Key": o.key} for o in moved[start : start + 1000]], "Quiet": True},
        )
        for error in response.get("Errors", []):
            kept.append({"key": error["Key"], "problems": [f"delete failed: {error.get('Code')}"]})
    return {
        "moved": len(moved),
        "bytes": sum(o.size for o in moved),
        "stage_keys": [o.key for o in moved],
        "archive_keys": [archive_key(o.key, day) for o in moved],
        "kept": kept,
    }
