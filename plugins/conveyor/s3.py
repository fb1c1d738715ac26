"""S3 helpers every pipeline shares: listing, the one copy engine, and a streaming multipart writer.

Copies are server-side. Below the multipart threshold an object is one CopyObject call; above it
boto3's managed transfer (s3transfer) copies it in parallel UploadPartCopy parts, so objects over
CopyObject's 5 GB limit copy too. Content type, user metadata and the other stored headers are
kept on both paths. A copy can name the exact source version, so what is copied is exactly what
was listed even if the key is overwritten meanwhile.

A copy batch stops starting new copies at its deadline, and when the calling thread is
interrupted (Airflow's execution_timeout raises in the main thread) the copies not yet started
are cancelled: only the few already in flight finish.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from boto3.s3.transfer import TransferConfig, create_transfer_manager

MiB = 1024 * 1024
DEFAULT_MULTIPART_THRESHOLD = 64 * MiB
DEFAULT_MULTIPART_CHUNKSIZE = 64 * MiB
DEFAULT_MAX_CONCURRENCY = 10  # botocore's default connection pool size per client
PART_SIZE = 8 * MiB  # streaming uploads (S3's minimum part is 5 MiB, except the last)
DEADLINE_PASSED = "not started: the run's time budget ran out"


def s3_error_code(exc: Exception) -> str:
    """The S3 error code of a botocore ClientError ("NoSuchKey", "404", ...), else the type name."""
    return getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)


@dataclass(frozen=True)
class S3Object:
    """One listed object: enough to copy it without another HEAD request."""

    bucket: str
    key: str
    size: int
    version_id: str | None = None  # set: copy and delete exactly this version

    def copy_source(self) -> dict:
        source = {"Bucket": self.bucket, "Key": self.key}
        if self.version_id:
            source["VersionId"] = self.version_id
        return source


@dataclass(frozen=True)
class CopyRequest:
    source: S3Object
    target_bucket: str
    target_key: str


@dataclass(frozen=True)
class CopyResult:
    request: CopyRequest
    error: str | None = None
    code: str | None = None  # the S3 error code of a failed copy ("NoSuchVersion", "AccessDenied", ...)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def size(self) -> int:
        return self.request.source.size


def _is_folder_marker(key: str, size: int) -> bool:
    # Zero-byte keys ending in "/" are folders made by the console, not files.
    return key.endswith("/") and size == 0


def list_objects(client, bucket: str, prefix: str = "") -> Iterator[S3Object]:
    """Every object under `prefix`, in key order, one page (1,000 keys) at a time; no folder markers."""
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            if not _is_folder_marker(item["Key"], item["Size"]):
                yield S3Object(bucket, item["Key"], item["Size"])


def copy_objects(
    client,
    requests: Iterable[CopyRequest],
    *,
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
    multipart_threshold: int = DEFAULT_MULTIPART_THRESHOLD,
    multipart_chunksize: int = DEFAULT_MULTIPART_CHUNKSIZE,
    deadline: float | None = None,
) -> list[CopyResult]:
    """Copy every request server-side on at most `max_concurrency` concurrent S3 requests.

    Results come back in request order. Never raises for a failed object: each result carries
    its own error, so the caller decides what a partial failure means (retry, keep an SQS
    message, keep an inbound file, ...). A copy not started by `deadline` (`time.monotonic()`)
    is not started at all; its result says so.
    """
    requests = list(requests)
    # Below the threshold one CopyObject does it and keeps the metadata itself: call it directly,
    # as s3transfer would, without its per-transfer bookkeeping. Larger objects go through
    # s3transfer's managed copy, which HEADs the source and carries its content type and metadata
    # over to the multipart upload.
    small = [i for i, r in enumerate(requests) if r.source.size < multipart_threshold]
    large = [i for i, r in enumerate(requests) if r.source.size >= multipart_threshold]
    results: list[CopyResult | None] = [None] * len(requests)

    def out_of_time() -> bool:
        return deadline is not None and time.monotonic() >= deadline

    def copy_small(index: int) -> None:
        request = requests[index]
        if out_of_time():
            results[index] = CopyResult(request, DEADLINE_PASSED)
            return
        results[index] = _attempt(
            request,
            lambda: client.copy_object(
                CopySource=request.source.copy_source(),
                Bucket=request.target_bucket,
                Key=request.target_key,
            ),
        )

    if small:
        pool = ThreadPoolExecutor(max_workers=min(max_concurrency, len(small)))
        try:
            for future in [pool.submit(copy_small, index) for index in small]:
                future.result()
        finally:
            # On an interruption (execution_timeout) drop the queued copies; wait only for
            # the ones in flight.
            pool.shutdown(wait=True, cancel_futures=True)
    if large:
        config = TransferConfig(
            max_concurrency=max_concurrency,
            multipart_threshold=multipart_threshold,
            multipart_chunksize=multipart_chunksize,
        )
        # On an exception the transfer manager cancels what has not run yet.
        with create_transfer_manager(client, config) as manager:
            futures = {}
            for index in large:
                if out_of_time():
                    results[index] = CopyResult(requests[index], DEADLINE_PASSED)
                    continue
                futures[index] = manager.copy(
                    copy_source=requests[index].source.copy_source(),
                    bucket=requests[index].target_bucket,
                    key=requests[index].target_key,
                )
            for index, future in futures.items():
                results[index] = _attempt(requests[index], future.result)
    return results


def _attempt(request: CopyRequest, copy) -> CopyResult:
    """Run one copy; a failure becomes the object's result (the caller decides what it means)."""
    try:
        copy()
    except Exception as exc:
        return CopyResult(request, f"{type(exc).__name__}: {exc}", s3_error_code(exc))
    return CopyResult(request)


class S3MultipartWriter(io.RawIOBase):
    """A writable file that uploads `part_size` parts as it goes; `close()` completes the upload,
    `abort()` discards it. Memory: one part. Extra keyword arguments (ContentType, Metadata, ...)
    go to CreateMultipartUpload."""

    def __init__(self, s3, bucket: str, key: str, *, part_size: int = PART_SIZE, **create_args):
        self._s3, self._bucket, self._key, self._part_size = s3, bucket, key, part_size
        self._upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key, **create_args)["UploadId"]
        self._buffer = bytearray()
        self._parts: list[dict] = []
        self._position = 0
        self.bytes_written = 0

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def write(self, data) -> int:
        self._buffer += data
        self._position += len(data)
        while len(self._buffer) >= self._part_size:
            with memoryview(self._buffer) as view:  # one copy of the part (a bytearray slice makes two)
                part = bytes(view[: self._part_size])
            self._upload_part(part)
            del self._buffer[: self._part_size]
        return len(data)

    def _upload_part(self, body: bytes) -> None:
        number = len(self._parts) + 1
        etag = self._s3.upload_part(
            Bucket=self._bucket, Key=self._key, UploadId=self._upload_id, PartNumber=number, Body=body
        )["ETag"]
        self._parts.append({"ETag": etag, "PartNumber": number})
        self.bytes_written += len(body)

    def close(self) -> None:
        if self.closed:
            return
        if self._buffer or not self._parts:
            self._upload_part(bytes(self._buffer))
            self._buffer.clear()
        self._s3.complete_multipart_upload(
            Bucket=self._bucket,
            Key=self._key,
            UploadId=self._upload_id,
            MultipartUpload={"Parts": self._parts},
        )
        super().close()

    def abort(self) -> None:
        if not self.closed:
            self._s3.abort_multipart_upload(Bucket=self._bucket, Key=self._key, UploadId=self._upload_id)
            super().close()


def upload_chunks(s3, bucket: str, key: str, chunks, **create_args) -> int:
    """Stream byte chunks into one object (multipart, one part in memory); returns its size.

    On any error the upload is aborted, so no partial object is ever visible.
    """
    writer = S3MultipartWriter(s3, bucket, key, **create_args)
    try:
        for chunk in chunks:
            writer.write(chunk)
        writer.close()
    except BaseException:
        writer.abort()
        raise
    return writer.bytes_written


class S3ObjectReader(io.RawIOBase):
    """A seekable, readable file over one S3 object: each read is a ranged GET, so a Parquet
    reader fetches the footer and then one row group's column chunks at a time, never the whole
    object. Wrap it in `io.BufferedReader` to read in bigger ranges."""

    def __init__(self, s3, bucket: str, key: str):
        self._s3, self._bucket, self._key = s3, bucket, key
        self.size = s3.head_object(Bucket=bucket, Key=key)["ContentLength"]
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self.size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def readinto(self, buffer) -> int:
        wanted = min(len(buffer), self.size - self._position)
        if wanted <= 0:
            return 0
        end = self._position + wanted - 1
        body = self._s3.get_object(Bucket=self._bucket, Key=self._key, Range=f"bytes={self._position}-{end}")
        data = body["Body"].read()
        memoryview(buffer)[: len(data)] = data
        self._position += len(data)
        return len(data)
