"""The copy engine on moto: byte-identical copies, metadata kept, multipart, a result per object."""

from __future__ import annotations

import hashlib
import os

from conveyor.copying import CopyRequest, MiB, S3Object, copy_objects, list_objects

SOURCE, TARGET = "conveyor-local-source", "conveyor-local-raw"


def _put(s3, key, body, **extra):
    s3.put_object(Bucket=SOURCE, Key=key, Body=body, **extra)
    return S3Object(SOURCE, key, len(body), s3.head_object(Bucket=SOURCE, Key=key)["ETag"])


def test_list_objects_pages_and_skips_folder_markers(aws):
    s3 = aws["session"].client("s3")
    for i in range(1_005):  # more than one page of 1,000
        s3.put_object(Bucket=SOURCE, Key=f"many/{i:05d}.txt", Body=b"x")
    s3.put_object(Bucket=SOURCE, Key="many/folder/", Body=b"")
    s3.put_object(Bucket=SOURCE, Key="other/1.txt", Body=b"x")
    listed = list(list_objects(s3, SOURCE, "many/"))
    assert len(listed) == 1_005
    assert listed[0] == S3Object(SOURCE, "many/00000.txt", 1, listed[0].etag)
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
    gone = S3Object(SOURCE, "deleted-after-listing.txt", 5, '"0"')
    results = copy_objects(s3, [CopyRequest(good, TARGET, "ok.txt"), CopyRequest(gone, TARGET, "gone.txt")])
    assert results[0].ok
    assert not results[1].ok
    assert "NoSuchKey" in results[1].error or "Not Found" in results[1].error
    assert s3.get_object(Bucket=TARGET, Key="ok.txt")["Body"].read() == b"fine"
