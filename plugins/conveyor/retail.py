"""Random but realistic retail data: users and their transactions, deterministic for a seed.

`generate(users, transactions, seed, fmt)` returns {"user": bytes, "transactions": bytes}: CSV with
a header, or newline-delimited JSON. The same arguments always give the same bytes.
"""

from __future__ import annotations

import csv
import io
import json
import random
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

FORMATS = ("csv", "json")
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


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def users_and_transactions(users: int, transactions: int, seed: int) -> tuple[list[dict], list[dict]]:
    if users < 1 or transactions < 0:
        raise ValueError(f"need at least one user and no negative transactions (got {users}, {transactions})")
    rng = random.Random(seed)
    people = []
    for _ in range(users):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        country, city = rng.choice(CITIES)
        user_id = _uuid(rng)
        people.append(
            {
                "user_id": user_id,
                "first_name": first,
                "last_name": last,
                "email": f"{first}.{last}.{user_id[:6]}@example.com".lower().replace("'", ""),
                "country": country,
                "city": city,
                "signup_ts": (EPOCH + timedelta(seconds=rng.randint(0, 180 * 86_400))).isoformat(),
                "marketing_opt_in": rng.random() < 0.4,
            }
        )
    sales = []
    for _ in range(transactions):
        buyer = rng.choice(people)
        product_id, name, category, price = rng.choice(PRODUCTS)
        signup = datetime.fromisoformat(buyer["signup_ts"])
        sales.append(
            {
                "transaction_id": _uuid(rng),
                "user_id": buyer["user_id"],
                "product_id": product_id,
                "product_name": name,
                "category": category,
                "quantity": rng.choices([1, 2, 3, 4, 5], weights=[60, 20, 10, 6, 4])[0],
                "unit_price": str(Decimal(price)),
                "currency": CURRENCIES[buyer["country"]],
                "payment_method": rng.choice(PAYMENT_METHODS),
                "transaction_ts": (signup + timedelta(seconds=rng.randint(60, 90 * 86_400))).isoformat(),
            }
        )
    return people, sales


def _encode(rows: list[dict], fields: list[str], fmt: str) -> bytes:
    if fmt == "json":
        return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def generate(users: int, transactions: int, seed: int, fmt: str = "csv") -> dict[str, bytes]:
    """{"user": file bytes, "transactions": file bytes} in `fmt` ("csv" or "json" lines)."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    people, sales = users_and_transactions(users, transactions, seed)
    return {
        "user": _encode(people, USER_FIELDS, fmt),
        "transactions": _encode(sales, TRANSACTION_FIELDS, fmt),
    }


def inbound_keys(stamp: str, seed: int, fmt: str) -> dict[str, str]:
    """Where a generator run writes in the inbound bucket (the prefixes the retail pipes expect)."""
    return {
        "user": f"user/users-{stamp}-seed{seed}.{fmt}",
        "transactions": f"transactions/transactions-{stamp}-seed{seed}.{fmt}",
    }
