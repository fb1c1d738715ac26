"""Random but realistic retail data: users and their transactions, deterministic for a seed,
generated as a stream of chunks so memory stays flat for any number of rows.

A user's fields come from a hash of (seed, user number), so a transaction can name its buyer's
id, currency and sign-up time without any user being kept in memory; the transactions' own
fields come from one random stream seeded by the seed. The same arguments always give the same
bytes, whatever the chunk size.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import random
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

FORMATS = ("csv", "json")
CONTENT_TYPES = {"csv": "text/csv", "json": "application/x-ndjson"}
CHUNK_ROWS = 20_000
# The trigger form's limits: about a minute of generating and uploading at the maxima (100,000
# transactions take ~5 s and make ~16 MB of CSV). The form clamps a number outside them to the
# nearest limit, so each Param's description states them.
MAX_USERS = 100_000
MAX_TRANSACTIONS = 1_000_000
FIRST_NAMES = [
    "Ava",
    "Liam",
    "Zoë",
    "Noah",
    "Mia",
    "Ethan",
    "Chloé",
    "Oliver",
    "Aisha",
    "Mateo",
    "Yuki",
    "Søren",
    "Amara",
    "Luca",
    "Ingrid",
    "Rahul",
    "Fatima",
    "Jonas",
    "Nia",
    "Kai",
]
LAST_NAMES = [
    "Smith",
    "García",
    "Nguyen",
    "Müller",
    "O'Brien",
    "Kowalski",
    "Rossi",
    "Tanaka",
    "Okafor",
    "Johansson",
    "Dubois",
    "Silva",
    "Patel",
    "Cohen",
    "Novak",
    "Haddad",
]
CITIES = [
    ("GB", "London"),
    ("GB", "Manchester"),
    ("FR", "Paris"),
    ("DE", "Berlin"),
    ("ES", "Madrid"),
    ("US", "New York"),
    ("US", "Austin"),
    ("JP", "Tokyo"),
    ("BR", "São Paulo"),
    ("NG", "Lagos"),
]
PRODUCTS = [
    ("P-1001", "Espresso beans 1kg", "grocery", "18.50"),
    ("P-1002", "Running shoes", "sport", "89.99"),
    ("P-1003", "Desk lamp", "home", "34.00"),
    ("P-1004", "Noise-cancelling headphones", "electronics", "199.00"),
    ("P-1005", "Yoga mat", "sport", "25.75"),
    ("P-1006", "Cast-iron pan", "home", "45.10"),
    ("P-1007", "E-reader", "electronics", "129.49"),
    ("P-1008", "Green tea 100 bags", "grocery", "6.20"),
]
CURRENCIES = {
    "GB": "GBP",
    "FR": "EUR",
    "DE": "EUR",
    "ES": "EUR",
    "US": "USD",
    "JP": "JPY",
    "BR": "BRL",
    "NG": "NGN",
}
PAYMENT_METHODS = ["card", "paypal", "apple_pay", "bank_transfer", "gift_card"]
EPOCH = datetime(2024, 1, 1, tzinfo=UTC)  # fixed: output depends on the seed alone
SIGNUP_SPAN_S = 180 * 86_400

USER_FIELDS = [
    "user_id",
    "first_name",
    "last_name",
    "email",
    "country",
    "city",
    "signup_ts",
    "marketing_opt_in",
]
TRANSACTION_FIELDS = [
    "transaction_id",
    "user_id",
    "product_id",
    "product_name",
    "category",
    "quantity",
    "unit_price",
    "currency",
    "payment_method",
    "transaction_ts",
]


def _check(users: int, transactions: int, fmt: str) -> None:
    if users < 1 or transactions < 0:
        raise ValueError(f"need at least one user and no negative transactions (got {users}, {transactions})")
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")


def user(seed: int, number: int) -> dict:
    """User `number` (0-based) of the data set for `seed`: the same dict every time it is asked."""
    digest = hashlib.blake2b(f"{seed}:{number}".encode(), digest_size=32).digest()
    user_id = str(uuid.UUID(bytes=digest[:16], version=4))
    first, last = FIRST_NAMES[digest[16] % len(FIRST_NAMES)], LAST_NAMES[digest[17] % len(LAST_NAMES)]
    country, city = CITIES[digest[18] % len(CITIES)]
    signup = EPOCH + timedelta(seconds=int.from_bytes(digest[19:23], "big") % SIGNUP_SPAN_S)
    return {
        "user_id": user_id,
        "first_name": first,
        "last_name": last,
        "email": f"{first}.{last}.{user_id[:6]}@example.com".lower().replace("'", ""),
        "country": country,
        "city": city,
        "signup_ts": signup.isoformat(),
        "marketing_opt_in": digest[23] < 102,  # 40 %
    }


@functools.lru_cache(maxsize=1024)  # bounded (~0.5 MiB); small user counts hit it every time
def _buyer(seed: int, number: int) -> tuple[str, str, datetime]:
    """(user_id, currency, sign-up time) of a transaction's buyer."""
    row = user(seed, number)
    return row["user_id"], CURRENCIES[row["country"]], datetime.fromisoformat(row["signup_ts"])


def user_rows(users: int, seed: int) -> Iterator[dict]:
    for number in range(users):
        yield user(seed, number)


def transaction_rows(users: int, transactions: int, seed: int) -> Iterator[dict]:
    _buyer.cache_clear()
    rng = random.Random(seed)
    for _ in range(transactions):
        user_id, currency, signup = _buyer(seed, rng.randrange(users))
        product_id, name, category, price = rng.choice(PRODUCTS)
        yield {
            "transaction_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "user_id": user_id,
            "product_id": product_id,
            "product_name": name,
            "category": category,
            "quantity": rng.choices([1, 2, 3, 4, 5], weights=[60, 20, 10, 6, 4])[0],
            "unit_price": str(Decimal(price)),
            "currency": currency,
            "payment_method": rng.choice(PAYMENT_METHODS),
            "transaction_ts": (signup + timedelta(seconds=rng.randint(60, 90 * 86_400))).isoformat(),
        }


def encode(
    rows: Iterable[dict], fields: list[str], fmt: str, chunk_rows: int = CHUNK_ROWS
) -> Iterator[bytes]:
    """CSV with a header, or JSON lines, `chunk_rows` rows per chunk of bytes."""
    buffer = io.StringIO()
    if fmt == "csv":
        writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        write = writer.writerow
    else:

        def write(row: dict) -> None:
            buffer.write(json.dumps(row, ensure_ascii=False) + "\n")

    pending = 0
    for row in rows:
        write(row)
        pending += 1
        if pending == chunk_rows:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
            pending = 0
    if buffer.tell():
        yield buffer.getvalue().encode("utf-8")


def stream(
    users: int, transactions: int, seed: int, fmt: str = "csv", chunk_rows: int = CHUNK_ROWS
) -> dict[str, Iterator[bytes]]:
    """{"user": chunks, "transactions": chunks}: each file as a stream of byte chunks."""
    _check(users, transactions, fmt)
    return {
        "user": encode(user_rows(users, seed), USER_FIELDS, fmt, chunk_rows),
        "transactions": encode(
            transaction_rows(users, transactions, seed), TRANSACTION_FIELDS, fmt, chunk_rows
        ),
    }


def generate(users: int, transactions: int, seed: int, fmt: str = "csv") -> dict[str, bytes]:
    """{"user": file bytes, "transactions": file bytes}, whole (for small sizes and tests)."""
    return {kind: b"".join(chunks) for kind, chunks in stream(users, transactions, seed, fmt).items()}


def inbound_keys(stamp: str, seed: int, fmt: str) -> dict[str, str]:
    """Where a generator run writes in the inbound bucket (the prefixes the retail pipes expect)."""
    return {
        "user": f"user/users-{stamp}-seed{seed}.{fmt}",
        "transactions": f"transactions/transactions-{stamp}-seed{seed}.{fmt}",
    }
