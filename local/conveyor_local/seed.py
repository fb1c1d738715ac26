"""Sample data on the local stack, so the README's commands have something to move.

- `s3://<prefix>-source/movielens/`: the MovieLens-style files `nightly_file_ingestion`'s default
  config copies;
- the `totesys` database: ToteSys's tables with a deterministic population (scale 1, seed 1),
  every row last updated before 2024-03-05 19:00 UTC, so a `full_snapshot` run of any later
  interval takes all of it.

`make services` seeds what is missing (a new stack, or moto's buckets after a restart: moto keeps
nothing); `make seed` puts all of it back as it was.
"""

from __future__ import annotations

from datetime import UTC, datetime

from conveyor_local import sample_data
from conveyor_local import totesys_data as totesys

TOTESYS_AT = datetime(2024, 3, 5, 19, 0, tzinfo=UTC).replace(tzinfo=None)  # naive UTC, as ToteSys stores
SOURCE_PREFIX = "movielens/"


def seed(s3, source_bucket: str, totesys_dsn: str, *, force: bool = False) -> list[str]:
    """Load what is missing (everything, with `force`); returns what was loaded, one line each."""
    import psycopg

    loaded = []
    if force or not s3.list_objects_v2(Bucket=source_bucket, Prefix=SOURCE_PREFIX, MaxKeys=1).get("KeyCount"):
        files = sample_data.movielens_files()
        sample_data.upload(s3, source_bucket, files)
        loaded.append(f"{len(files)} MovieLens-style files in s3://{source_bucket}/{SOURCE_PREFIX}")
    with psycopg.connect(totesys_dsn) as conn:
        exists = conn.execute("SELECT to_regclass('public.sales_order') IS NOT NULL").fetchone()[0]
        if force or not exists:
            conn.execute("DROP SCHEMA public CASCADE")
            conn.execute("CREATE SCHEMA public")
            totesys.create_schema(conn)
            counts = totesys.populate(conn, scale=1, seed=1, at=TOTESYS_AT)
            conn.commit()
            loaded.append(
                f"ToteSys: {sum(counts.values()):,} rows in {len(counts)} tables (database totesys)"
            )
    return loaded
