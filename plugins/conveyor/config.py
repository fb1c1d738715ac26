"""The one way a run finds and reads its JSON config.

A run's config is, in this order: a `config_uri` Param (`s3://bucket/key`), the pipeline's
Airflow Variable (`s3://bucket/key`, or the JSON document itself pasted into the Variable), or
the default file shipped in `include/config/`. Anything else is a ConfigError that says what the
value was and what is accepted: a value is never guessed to be a local path.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from conveyor.s3 import s3_error_code

# S3 error codes that retrying will not fix: the location or bucket is unusable as configured.
PERMANENT_S3_ERRORS = {"404", "403", "NoSuchKey", "NoSuchBucket", "AccessDenied", "InvalidBucketName"}
S3_URI = re.compile(r"^s3://([^/]+)/(.+)$")
S3_URI_PATTERN = S3_URI.pattern  # for Param(pattern=...): the trigger form rejects other values


class ConfigError(ValueError):
    """A config cannot be used; the message says where it came from and what is wrong."""


def parse_s3_uri(uri: str, origin: str = "config location") -> tuple[str, str]:
    """`s3://bucket/key` -> (bucket, key); anything else is a ConfigError naming `origin`."""
    match = S3_URI.match(uri.strip())
    if not match:
        raise ConfigError(f"{origin}: {_shown(uri)} is not an S3 URI of the form s3://bucket/key")
    return match.group(1), match.group(2)


def _shown(value: str, limit: int = 80) -> str:
    value = value.strip()
    return repr(value if len(value) <= limit else value[: limit - 1] + "…")


def read_s3_text(s3, uri: str, origin: str) -> str:
    """The UTF-8 text at `s3://bucket/key`. Throttling and network errors propagate (retry)."""
    bucket, key = parse_s3_uri(uri, origin)
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except Exception as exc:
        code = s3_error_code(exc)
        if code not in PERMANENT_S3_ERRORS:
            raise
        raise ConfigError(f"{origin}: {uri} cannot be read: {code}") from exc
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{origin}: {uri} is not UTF-8 text ({exc})") from exc


def config_text(
    s3,
    *,
    default: Path,
    variable_name: str,
    variable: str | None = None,
    uri: str | None = None,
    uri_name: str = "config_uri",
) -> tuple[str, str]:
    """(JSON text, where it came from) of the config a run uses.

    `uri` (a Param) must be `s3://bucket/key`; `variable` may be `s3://bucket/key` or the JSON
    document itself; with neither, the `default` file.
    """
    if uri:
        origin = f"Param {uri_name}"
        return read_s3_text(s3, uri.strip(), origin), uri.strip()
    if variable and variable.strip():
        value = variable.strip()
        origin = f"Variable {variable_name}"
        if value.startswith(("{", "[")):
            return value, f"{origin} (inline JSON)"
        if value.startswith("s3://"):
            return read_s3_text(s3, value, origin), value
        raise ConfigError(
            f"{origin} must hold s3://bucket/key or the config's JSON document itself; got {_shown(value)}"
        )
    return default.read_text(encoding="utf-8"), str(default)


def load_json(text: str, origin: str = "config"):
    """Decode a JSON config; a syntax error is a ConfigError saying where."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{origin}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc
