"""A deterministic ToteSys for the demo, the tests and the bench (local only): schema, data at a
scale factor, and `simulate` for new changes.

Every timestamp is derived from the `at` argument (never the clock), so a seed and an `at` give
the same database. Rows carry realistic foreign keys, some NULLs and non-ASCII text.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

# The source's DDL: local only (MWAA never creates ToteSys), so it lives beside this tooling.
SCHEMA_SQL = Path(__file__).resolve().parents[1] / "sql" / "totesys" / "schema.sql"

TABLES = (
    "address",
    "department",
    "staff",
    "currency",
    "design",
    "counterparty",
    "payment_type",
    "sales_order",
    "purchase_order",
    "transaction",
    "payment",
)
CITIES = [
    ("London", "GB"),
    ("Manchester", "GB"),
    ("Kraków", "PL"),
    ("São Paulo", "BR"),
    ("Zürich", "CH"),
    ("Montréal", "CA"),
    ("Reykjavík", "IS"),
    ("Tōkyō", "JP"),
    ("Leeds", "GB"),
    ("Lyon", "FR"),
]
NAMES = [
    "Zoë",
    "Łukasz",
    "Amélie",
    "Ngozi",
    "Søren",
    "José",
    "Aiko",
    "Fatima",
    "Oliver",
    "Priya",
    "Jeremie",
    "Meera",
    "Connor",
    "Yusuf",
    "Chloé",
    "Björn",
]
SURNAMES = ["Franey", "Müller", "O'Connell", "Nakamura", "Dąbrowski", "Okafor", "García", "Ivanova", "Patel"]
DEPARTMENTS = [
    ("Sales", "Manchester"),
    ("Purchasing", "Manchester"),
    ("Production", "Leeds"),
    ("Dispatch", "Leds"),
    ("Finance", "Manchester"),
    ("Facilities", "Manchester"),
    ("Communications", "Leeds"),
    ("HR", "Leeds"),
]
CURRENCIES = ["GBP", "USD", "EUR"]
PAYMENT_TYPES = ["SALES_RECEIPT", "SALES_REFUND", "PURCHASE_PAYMENT", "PURCHASE_REFUND"]
DESIGN_WORDS = [
    "Bronze",
    "Granite",
    "Wooden",
    "Steel",
    "Soft",
    "Frozen",
    "Fresh",
    "Rubber",
    "Cotton",
    "Plastic",
]


def create_schema(conn) -> None:
    conn.execute(SCHEMA_SQL.read_text())
    conn.commit()


def _stamp(rng: random.Random, at: datetime, span: timedelta) -> tuple[datetime, datetime]:
    """(created_at, last_updated) inside [at - span, at), last_updated >= created_at."""
    created = at - span + timedelta(microseconds=rng.randrange(int(span.total_seconds() * 1e6)))
    updated = created + timedelta(microseconds=rng.randrange(int((at - created).total_seconds() * 1e6) or 1))
    return created, updated


def _copy(conn, table: str, columns: list[str], rows: list[tuple]) -> None:
    with conn.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def _counts(scale: float) -> dict[str, int]:
    def n(base):
        return max(1, int(base * scale))

    return {
        "address": n(30),
        "staff": n(20),
        "design": n(50),
        "counterparty": n(20),
        "sales_order": n(200),
        "purchase_order": n(100),
    }


def populate(conn, *, scale: float = 1.0, seed: int = 1, at: datetime) -> dict[str, int]:
    """Fill an empty ToteSys (schema created) with rows last updated in the 30 days before `at`."""
    rng = random.Random(seed)
    span = timedelta(days=30)
    counts = _counts(scale)

    def stamps():
        return _stamp(rng, at, span)

    addresses = []
    for _ in range(counts["address"]):
        city, country = rng.choice(CITIES)
        addresses.append(
            (
                f"{rng.randint(1, 999)} {rng.choice(SURNAMES)} Street",
                rng.choice([None, f"Unit {rng.randint(1, 40)}"]),
                rng.choice([None, "Avon", "Bedfordshire", "Île-de-France"]),
                city,
                f"{rng.randint(10000, 99999)}",
                country,
                f"+44 {rng.randint(1000, 9999)} {rng.randint(100000, 999999)}",
                *stamps(),
            )
        )
    _copy(
        conn,
        "address",
        [
            "address_line_1",
            "address_line_2",
            "district",
            "city",
            "postal_code",
            "country",
            "phone",
            "created_at",
            "last_updated",
        ],
        addresses,
    )
    _copy(
        conn,
        "department",
        ["department_name", "location", "manager", "created_at", "last_updated"],
        [
            (name, loc, rng.choice([None, f"{rng.choice(NAMES)} {rng.choice(SURNAMES)}"]), *stamps())
            for name, loc in DEPARTMENTS
        ],
    )
    staff = []
    for i in range(counts["staff"]):
        first, last = rng.choice(NAMES), rng.choice(SURNAMES)
        staff.append(
            (
                first,
                last,
                rng.randint(1, len(DEPARTMENTS)),
                f"{first}.{last}.{i}@terrifictotes.com".lower().replace("'", ""),
                *stamps(),
            )
        )
    _copy(
        conn,
        "staff",
        ["first_name", "last_name", "department_id", "email_address", "created_at", "last_updated"],
        staff,
    )
    _copy(
        conn,
        "currency",
        ["currency_code", "created_at", "last_updated"],
        [(c, *stamps()) for c in CURRENCIES],
    )
    _copy(
        conn,
        "design",
        ["design_name", "file_location", "file_name", "created_at", "last_updated"],
        [
            (w, "/usr/share/designs", f"{w.lower()}-{i:05d}.json", *stamps())
            for i, w in enumerate(rng.choice(DESIGN_WORDS) for _ in range(counts["design"]))
        ],
    )
    _copy(
        conn,
        "counterparty",
        [
            "counterparty_legal_name",
            "legal_address_id",
            "commercial_contact",
            "delivery_contact",
            "created_at",
            "last_updated",
        ],
        [
            (
                f"{rng.choice(SURNAMES)} & {rng.choice(SURNAMES)} Ltd",
                rng.randint(1, counts["address"]),
                rng.choice([None, f"{rng.choice(NAMES)} {rng.choice(SURNAMES)}"]),
                f"{rng.choice(NAMES)} {rng.choice(SURNAMES)}",
                *stamps(),
            )
            for _ in range(counts["counterparty"])
        ],
    )
    _copy(
        conn,
        "payment_type",
        ["payment_type_name", "created_at", "last_updated"],
        [(p, *stamps()) for p in PAYMENT_TYPES],
    )
    _insert_orders(
        conn, rng, counts, counts["sales_order"], counts["purchase_order"], at, span, first_ids=(1, 1, 1)
    )
    conn.commit()
    return table_counts(conn)


def _order_row(rng: random.Random, counts: dict, created: datetime, updated: datetime, sale: bool) -> tuple:
    delivery = (created + timedelta(days=rng.randint(1, 30))).date()
    payment = delivery + timedelta(days=rng.randint(0, 30))
    if sale:
        return (
            rng.randint(1, counts["design"]),
            rng.randint(1, counts["staff"]),
            rng.randint(1, counts["counterparty"]),
            rng.randint(1, 100_000),
            Decimal(rng.randint(200, 400_00)) / 100,
            rng.randint(1, len(CURRENCIES)),
            delivery,
            payment,
            rng.randint(1, counts["address"]),
            created,
            updated,
        )
    return (
        rng.randint(1, counts["staff"]),
        rng.randint(1, counts["counterparty"]),
        f"ITEM-{rng.randint(1, 9999):04d}",
        rng.randint(1, 1000),
        Decimal(rng.randint(100, 99999_99)) / 100,
        rng.randint(1, len(CURRENCIES)),
        delivery,
        payment,
        rng.randint(1, counts["address"]),
        created,
        updated,
    )


SALES_COLUMNS = [
    "design_id",
    "staff_id",
    "counterparty_id",
    "units_sold",
    "unit_price",
    "currency_id",
    "agreed_delivery_date",
    "agreed_payment_date",
    "agreed_delivery_location_id",
    "created_at",
    "last_updated",
]
PURCHASE_COLUMNS = [
    "staff_id",
    "counterparty_id",
    "item_code",
    "item_quantity",
    "item_unit_price",
    "currency_id",
    "agreed_delivery_date",
    "agreed_payment_date",
    "agreed_delivery_location_id",
    "created_at",
    "last_updated",
]


def _insert_orders(
    conn, rng, counts, sales: int, purchases: int, at: datetime, span: timedelta, first_ids
) -> None:
    """Orders, a transaction for each, and a payment for each transaction."""
    next_sale, next_purchase, next_transaction = first_ids
    sale_rows = [_order_row(rng, counts, *_stamp(rng, at, span), sale=True) for _ in range(sales)]
    purchase_rows = [_order_row(rng, counts, *_stamp(rng, at, span), sale=False) for _ in range(purchases)]
    _copy(conn, "sales_order", SALES_COLUMNS, sale_rows)
    _copy(conn, "purchase_order", PURCHASE_COLUMNS, purchase_rows)
    transactions = [("SALE", next_sale + i, None, row[-2], row[-1]) for i, row in enumerate(sale_rows)]
    transactions += [
        ("PURCHASE", None, next_purchase + i, row[-2], row[-1]) for i, row in enumerate(purchase_rows)
    ]
    _copy(
        conn,
        "transaction",
        ["transaction_type", "sales_order_id", "purchase_order_id", "created_at", "last_updated"],
        transactions,
    )
    payments = []
    for i, (kind, _, _, created, updated) in enumerate(transactions):
        payments.append(
            (
                next_transaction + i,
                rng.randint(1, counts["counterparty"]),
                Decimal(rng.randint(100, 10_000_000)) / 100,
                rng.randint(1, len(CURRENCIES)),
                1 if kind == "SALE" else 3,
                rng.random() < 0.7,
                (updated + timedelta(days=rng.randint(0, 20))).date(),
                rng.randint(10_000_000, 99_999_999),
                rng.randint(10_000_000, 99_999_999),
                created,
                updated,
            )
        )
    _copy(
        conn,
        "payment",
        [
            "transaction_id",
            "counterparty_id",
            "payment_amount",
            "currency_id",
            "payment_type_id",
            "paid",
            "payment_date",
            "company_ac_number",
            "counterparty_ac_number",
            "created_at",
            "last_updated",
        ],
        payments,
    )


def simulate(
    conn,
    *,
    seed: int,
    at: datetime,
    span: timedelta = timedelta(minutes=3),
    new_orders: int = 20,
    updates: int = 10,
) -> dict[str, int]:
    """New orders (with transactions and payments) and updates, all last updated in [at, at + span).

    Returns how many rows each table gained or changed.
    """
    rng = random.Random(seed)
    counts = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}
    ids = tuple(
        conn.execute(f"SELECT coalesce(max({t}_id), 0) + 1 FROM {t}").fetchone()[0]
        for t in ("sales_order", "purchase_order", "transaction")
    )
    end = at + span
    _insert_orders(conn, rng, counts, new_orders, new_orders // 2, end, span, first_ids=ids)
    changed = {
        "sales_order": new_orders,
        "purchase_order": new_orders // 2,
        "transaction": new_orders + new_orders // 2,
        "payment": new_orders + new_orders // 2,
    }
    for _ in range(updates):
        stamp = at + timedelta(microseconds=rng.randrange(int(span.total_seconds() * 1e6)))
        counterparty = rng.randint(1, counts["counterparty"])
        conn.execute(
            "UPDATE counterparty SET delivery_contact = %s, last_updated = %s WHERE counterparty_id = %s",
            (f"{rng.choice(NAMES)} {rng.choice(SURNAMES)}", stamp, counterparty),
        )
        changed["counterparty"] = changed.get("counterparty", 0) + 1
    conn.commit()
    return changed


def table_counts(conn) -> dict[str, int]:
    return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}
