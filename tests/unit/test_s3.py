"""The S3 helpers on moto: listing, the copy engine (bytes, metadata, multipart, a result per object,
exact versions, deadline, cancellation) and the streaming multipart writer."""

from __future__ import annotations

import hashlib
import os

import pytest

from conveyor.s3 import CopyRequest, MiB, S3Object, copy_objects, list_objects

SOURCE, TARGET = "conveyor-local-source", "conveyor-local-raw"


def _put(s3, key, body, **extra):
    s3.put_object(Bucket=SOURCE, Key=key, Body=body, **extra)
    return S3Object(SOURCE, key, len(body))


def test_list_objects_pages_and_skips_folder_markers(aws):
    s3 = aws["session"].client("s3")
    for i in range(1_005):  # more than one page of 1,000
        s3.put_object(Bucket=SOURCE, Key=f"many/{i:05d}.txt", Body=b"x")
    s3.put_object(Bucket=SOURCE, Key="many/folder/", Body=b"")
    s3.put_object(Bucket=SOURCE, Key="other/1.txt", Body=b"x")
    listed = list(list_objects(s3, SOURCE, "many/"))
    assert len(listed) == 1_005
    assert listed[0] == S3Object(SOURCE, "many/00000.txt", 1)
    assert all(o.key.startswith("many/") and not o.key.endswith("/") for o in listed)


def test_small_copies_keep_bytes_and_metadata(aws):
    s3 = aws["session"].client("s3")
    sources = [
        _put(
            s3,
            "a b/ünï côde+x.json",
            '{"k": "ü"}'.encode(),
            ContentType="application/json",
            Metadata={"origin": "test"},
            CacheControl="max-age=60",
            ContentEncoding="identity",
        ),
        _put(s3, "nested/deep/er/file.csv", b"a,b\n1,2\n", ContentType="text/csv"),
    ]
    results = copy_objects(s3, [CopyRequest(o, TARGET, "copied/" + o.key) for o in sources])
    assert [r.ok for r in results] == [True, True]
    for source in sources:
        original = s3.get_object(Bucket=SOURCE, Key=source.key)
        copied = s3.get_object(Bucket=TARGET, Key="copied/" + source.key)
        assert copied["Body"].read() == original["Body"].read()
        for header in ("ContentType", "Metadata", "CacheControl", "ContentEncoding"):
            assert copied.get(header) == original.get(header), header


def test_multipart_copy_above_threshold_is_byte_identical_with_metadata(aws):
    s3 = aws["session"].client("s3")
    body = os.urandom(11 * MiB)
    source = _put(s3, "big/blob.bin", body, ContentType="application/x-blob", Metadata={"checksum": "sha256"})
    [result] = copy_objects(
        s3,
        [CopyRequest(source, TARGET, "big/blob.bin")],
        multipart_threshold=5 * MiB,
        multipart_chunksize=5 * MiB,
    )
    assert result.ok, result.error
    copied = s3.get_object(Bucket=TARGET, Key="big/blob.bin")
    assert hashlib.sha256(copied["Body"].read()).digest() == hashlib.sha256(body).digest()
    assert copied["ContentType"] == "application/x-blob"
    assert copied["Metadata"] == {"checksum": "sha256"}
    # A multipart ETag ("<md5>-<parts>") proves the copy really went through UploadPartCopy.
    assert copied["ETag"].strip('"').endswith("-3")


def test_a_failed_object_gets_its_own_result(aws):
    s3 = aws["session"].client("s3")
    good = _put(s3, "ok.txt", b"fine")
    gone = S3Object(SOURCE, "deleted-after-listing.txt", 5)
    results = copy_objects(s3, [CopyRequest(good, TARGET, "ok.txt"), CopyRequest(gone, TARGET, "gone.txt")])
    assert results[0].ok
    assert not results[1].ok
    assert "NoSuchKey" in results[1].error or "Not Found" in results[1].error
    assert s3.get_object(Bucket=TARGET, Key="ok.txt")["Body"].read() == b"fine"


def test_a_copy_names_the_exact_version_it_copies(aws):
    s3 = aws["session"].client("s3")
    first = s3.put_object(Bucket=SOURCE, Key="v.txt", Body=b"first")["VersionId"]
    s3.put_object(Bucket=SOURCE, Key="v.txt", Body=b"second, re-uploaded")
    listed = S3Object(SOURCE, "v.txt", 5, version_id=first)
    [result] = copy_objects(s3, [CopyRequest(listed, TARGET, "v.txt")])
    assert result.ok, result.error
    assert s3.get_object(Bucket=TARGET, Key="v.txt")["Body"].read() == b"first"


def _slow_copies(s3, seconds: float) -> list[str]:
    """Make every CopyObject take `seconds` more; returns the keys of the copies that started."""
    import time

    started = []

    def slow(params, **_):
        started.append(params["Key"])
        time.sleep(seconds)

    s3.meta.events.register("before-parameter-build.s3.CopyObject", slow)
    return started


def test_copies_not_started_by_the_deadline_are_not_started(aws):
    import time

    s3 = aws["session"].client("s3")
    sources = [_put(s3, f"d/{i}.txt", b"x") for i in range(20)]
    started = _slow_copies(s3, 0.2)
    results = copy_objects(
        s3,
        [CopyRequest(o, TARGET, o.key) for o in sources],
        max_concurrency=2,
        deadline=time.monotonic() + 0.3,
    )
    done = [r for r in results if r.ok]
    assert 1 <= len(done) < len(sources)
    assert len(started) == len(done), "a copy past the deadline is never sent"
    assert {r.error for r in results if not r.ok} == {"not started: the run's time budget ran out"}


def test_an_execution_timeout_cancels_the_copies_not_yet_started(aws):
    """Airflow's execution_timeout (SIGALRM in the task's main thread) interrupts the batch: the
    queued copies are dropped and only those in flight finish, instead of the whole batch."""
    import time

    from airflow.sdk.exceptions import AirflowTaskTimeout
    from airflow.sdk.execution_time.timeout import timeout

    s3 = aws["session"].client("s3")
    sources = [_put(s3, f"t/{i:02d}.txt", b"x") for i in range(40)]
    started = _slow_copies(s3, 0.5)
    with pytest.raises(AirflowTaskTimeout), timeout(1):
        copy_objects(s3, [CopyRequest(o, TARGET, o.key) for o in sources], max_concurrency=4)
    sent = len(started)
    assert 1 <= sent <= 16, (
        f"{sent} of 40 copies were sent after the timeout (width 4, 0.5 s each, 1 s budget)"
    )
    time.sleep(0.6)
    assert len(started) == sent, "no copy starts after the batch was interrupted"
    assert len(list(list_objects(s3, TARGET, "t/"))) == sent


def test_upload_chunks_streams_parts_and_aborts_on_error(aws):
    from conveyor.s3 import PART_SIZE, upload_chunks

    s3 = aws["session"].client("s3")
    chunks = [os.urandom(3 * MiB) for _ in range(4)]  # 12 MiB: two 8 MiB parts' worth, streamed
    size = upload_chunks(s3, TARGET, "streamed.bin", iter(chunks), ContentType="application/x-test")
    assert size == 12 * MiB > PART_SIZE
    got = s3.get_object(Bucket=TARGET, Key="streamed.bin")
    assert got["Body"].read() == b"".join(chunks) and got["ContentType"] == "application/x-test"
    assert got["ETag"].strip('"').endswith("-2"), "uploaded in parts"

    def failing():
        yield b"partial"
        raise RuntimeError("generator broke")

    with pytest.raises(RuntimeError, match="generator broke"):
        upload_chunks(s3, TARGET, "broken.bin", failing())
    assert "Contents" not in s3.list_objects_v2(Bucket=TARGET, Prefix="broken")
    assert not s3.list_multipart_uploads(Bucket=TARGET).get("Uploads"), "the failed upload was aborted"
