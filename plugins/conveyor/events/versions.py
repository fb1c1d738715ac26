"""Which exact object version each S3 event's copy reads, checked against the bucket first.

An event of a versioned bucket names the version it announces (`versionId`). Before copying, the
key's current version is read (HEAD), and each event gets one plan:
- COPY: the event names the current version, or names none (moto; an unversioned bucket): copy
  the current version, pinned to its VersionId, so a write in between changes nothing. Or the
  key has no current version any more (deleted: a delete marker) and the event names one: copy
  that version (the copy says whether it still exists).
- SUPERSEDED: the event names an older version that still exists. A newer version was written
  since and its own event copies it; copying the older one would roll curated back (a late or
  redriven event).
- VANISHED: the version the event names no longer exists (deleted for good, expired), or the
  event names none and the key is gone. Retrying cannot bring it back.
- FAILED: any other error (AccessDenied, throttling, ...): worth another try.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum

from conveyor.events.parsing import ObjectCreated
from conveyor.s3 import DEFAULT_MAX_CONCURRENCY, S3Object, s3_error_code

# What S3 answers for a version or key that does not exist (HEAD has no body, so only "404").
VANISHED_CODES = frozenset({"NoSuchVersion", "NoSuchKey", "404", "NotFound"})


class Outcome(StrEnum):
    COPY = "copy"
    SUPERSEDED = "superseded"
    VANISHED = "vanished"
    FAILED = "failed"


@dataclass(frozen=True)
class Plan:
    outcome: Outcome
    source: S3Object | None = None  # COPY: exactly this bucket, key and version
    detail: str = ""  # why: the error, or the version that superseded the event's


@dataclass(frozen=True)
class _Head:
    version_id: str | None = None
    size: int = 0
    code: str | None = None  # set: the HEAD failed with this S3 error code
    error: str = ""

    @property
    def missing(self) -> bool:
        return self.code in VANISHED_CODES


def _head(s3, bucket: str, key: str, version_id: str | None) -> _Head:
    request = {"Bucket": bucket, "Key": key} | ({"VersionId": version_id} if version_id else {})
    try:
        response = s3.head_object(**request)
    except Exception as exc:
        return _Head(code=s3_error_code(exc), error=f"{type(exc).__name__}: {exc}")
    return _Head(response.get("VersionId"), response["ContentLength"])


def _heads(s3, targets: set[tuple[str, str, str | None]], max_concurrency: int) -> dict:
    if not targets:
        return {}
    pool = ThreadPoolExecutor(max_workers=min(max_concurrency, len(targets)))
    try:
        futures = {target: pool.submit(_head, s3, *target) for target in targets}
        return {target: future.result() for target, future in futures.items()}
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # interrupted: drop the HEADs not started


def plan_copies(
    s3, objects: Iterable[ObjectCreated], *, max_concurrency: int = DEFAULT_MAX_CONCURRENCY
) -> dict[ObjectCreated, Plan]:
    """One plan per object: one HEAD per key, and one more per event naming a non-current version."""
    objects = list(dict.fromkeys(objects))
    current = _heads(s3, {(o.bucket, o.key, None) for o in objects}, max_concurrency)

    def head_of(o: ObjectCreated) -> _Head:
        return current[(o.bucket, o.key, None)]

    def names_another(o: ObjectCreated) -> bool:  # a version, and not the current one
        return bool(o.version_id) and head_of(o).code is None and o.version_id != head_of(o).version_id

    named = _heads(
        s3, {(o.bucket, o.key, o.version_id) for o in objects if names_another(o)}, max_concurrency
    )
    plans = {}
    for o in objects:
        head = head_of(o)
        if head.missing and o.version_id:
            plan = Plan(Outcome.COPY, S3Object(o.bucket, o.key, o.size, o.version_id))
        elif head.missing:
            plan = Plan(
                Outcome.VANISHED, detail=f"no object under the key ({head.error}); the event names no version"
            )
        elif head.code:
            plan = Plan(Outcome.FAILED, detail=head.error)
        elif o.version_id in (None, head.version_id):
            plan = Plan(Outcome.COPY, S3Object(o.bucket, o.key, head.size, head.version_id))
        elif (version := named[(o.bucket, o.key, o.version_id)]).code is None:
            plan = Plan(Outcome.SUPERSEDED, detail=f"version {head.version_id} was written since")
        elif version.missing:
            plan = Plan(Outcome.VANISHED, detail=version.error)
        else:
            plan = Plan(Outcome.FAILED, detail=version.error)
        plans[o] = plan
    return plans
