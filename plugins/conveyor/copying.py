"""The project's one S3 copy engine: server-side, parallel, bounded, a result per object.

Below the multipart threshold an object is one CopyObject call; above it boto3's managed
transfer (s3transfer) copies it in parallel UploadPartCopy parts, so objects over CopyObject's
5 GB limit copy too. Content type, user metadata and the other stored
headers are preserved on both paths (CopyObject copies them; s3transfer carries them over to a
multipart copy).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from boto3.s3.transfer import TransferConfig, create_transfer_manager

MiB = 1024 * 1024
DEFAULT_MULTIPART_THRESHOLD = 64 * MiB
DEFAULT_MULTIPART_CHUNKSIZE = 64 * MiB
DEFAULT_MAX_CONCURRENCY = 10  # botocore's default connection pool size per client


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

    Results come back in request order. Never raises for a failed object: each result carries
    its own error, so the caller decides what a partial failure means (retry, keep an SQS
    message, keep an inbound file, ...).
    """
    requests = list(requests)
    # Below the threshold one CopyObject does it and keeps the metadata itself: call it directly,
    # as s3transfer would, without its per-transfer bookkeeping. Larger objects go through
    # s3transfer's managed copy, which HEADs the source and carries its content type and metadata
    # over to the multipart upload.
    small = [i for i, r in enumerate(requests) if r.source.size < multipart_threshold]
    large = [i for i, r in enumerate(requests) if r.source.size >= multipart_threshold]
    results: list[CopyResult | None] = [None] * len(requests)

    def copy_small(index: int) -> None:
        request = requests[index]
        results[index] = _attempt(
            request,
            lambda: client.copy_object(
                CopySource={"Bucket": request.source.bucket, "Key": request.source.key},
                Bucket=request.target_bucket,
                Key=request.target_key,
            ),
        )

    if small:
        with ThreadPoolExecutor(max_workers=min(max_concurrency, len(small))) as pool:
            list(pool.map(copy_small, small))
    if large:
        config = TransferConfig(
            max_concurrency=max_concurrency,
            multipart_threshold=multipart_threshold,
            multipart_chunksize=multipart_chunksize,
        )
        with create_transfer_manager(client, config) as manager:
            futures = {
                index: manager.copy(
                    copy_source={"Bucket": requests[index].source.bucket, "Key": requests[index].source.key},
                    bucket=requests[index].target_bucket,
                    key=requests[index].target_key,
                )
                for index in large
            }
            for index, future in futures.items():
                results[index] = _attempt(requests[index], future.result)
    return results


def _attempt(request: CopyRequest, copy) -> CopyResult:
    """Run one copy; a failure becomes the object's result (the caller decides what it means)."""
    try:
        copy()
    except Exception as exc:
        return CopyResult(request, f"{type(exc).__name__}: {exc}")
    return CopyResult(request)


def s3_error_code(exc: Exception) -> str:
    """The S3 error code of a botocore ClientError ("NoSuchKey", "404", ...), else the type name."""
    return getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
