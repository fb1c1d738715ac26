"""The project's one S3 copy engine: server-side, parallel, bounded, a result per object.

Copies go through boto3's managed transfer (s3transfer): a single CopyObject below the multipart
threshold, parallel UploadPartCopy parts above it, so objects over CopyObject's 5 GB limit copy
too. Content type, user metadata and the other stored headers are preserved on both paths
(CopyObject copies them; s3transfer carries them over to a multipart copy).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from boto3.s3.transfer import TransferConfig, create_transfer_manager
from s3transfer.subscribers import BaseSubscriber

MiB = 1024 * 1024
DEFAULT_MULTIPART_THRESHOLD = 64 * MiB
DEFAULT_MULTIPART_CHUNKSIZE = 64 * MiB
DEFAULT_MAX_CONCURRENCY = 16


@dataclass(frozen=True)
class S3Object:
    """One listed object: enough to copy it without another HEAD request."""

    bucket: str
    key: str
    size: int
    etag: str | None = None


@dataclass(frozen=True)
class CopyRequest:
    source: S3Object
    target_bucket: str
    target_key: str


@dataclass(frozen=True)
class CopyResult:
    request: CopyRequest
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def size(self) -> int:
        return self.request.source.size


class _KnownSize(BaseSubscriber):
    """Hands the listed size and ETag to s3transfer so it skips its own HEAD of the source."""

    def __init__(self, size: int, etag: str):
        self._size = size
        self._etag = etag

    def on_queued(self, future, **kwargs):
        future.meta.provide_transfer_size(self._size)
        future.meta.provide_object_etag(self._etag)


def list_objects(client, bucket: str, prefix: str = "") -> Iterator[S3Object]:
    """Every object under `prefix`, in key order, one page (1,000 keys) at a time.

    Zero-byte keys ending in "/" are folder markers made by the console, not files: skipped.
    """
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            if item["Key"].endswith("/") and item["Size"] == 0:
                continue
            yield S3Object(bucket, item["Key"], item["Size"], item.get("ETag"))


def copy_objects(
    client,
    requests: Iterable[CopyRequest],
    *,
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD,
    multipart_chunksize: int = DEFAULT_MULTIPART_CHUNKSIZE,
) -> list[CopyResult]:
    """Copy every request server-side on at most `max_concurrency` concurrent S3 requests.

    Never raises for a failed object: each result carries its own error, so the caller decides
    what a partial failure means (retry the task, keep an SQS message, ...).
    """
    config = TransferConfig(
        max_concurrency=max_concurrency,
        multipart_threshold=multipart_threshold,
        multipart_chunksize=multipart_chunksize,
    )
    submitted = []
    with create_transfer_manager(client, config) as manager:
        for request in requests:
            source = request.source
            subscribers = []
            # Below the threshold CopyObject keeps the metadata itself, so the listing's size and
            # ETag are enough. Above it, let s3transfer HEAD the source: it reads the metadata
            # to carry over to the multipart upload from that response.
            if source.etag and source.size < multipart_threshold:
                subscribers.append(_KnownSize(source.size, source.etag))
            future = manager.copy(
                copy_source={"Bucket": source.bucket, "Key": source.key},
                bucket=request.target_bucket,
                key=request.target_key,
                subscribers=subscribers,
            )
            submitted.append((request, future))
        results = []
        for request, future in submitted:
            try:
                future.result()
            except Exception as exc:  # a result per object: the caller decides what failure means
                results.append(CopyResult(request, f"{type(exc).__name__}: {exc}"))
            else:
                results.append(CopyResult(request))
    return results
