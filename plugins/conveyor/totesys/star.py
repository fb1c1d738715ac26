"""The ToteSys star schema as the code sees it: its tables and keys, what each fact references,
and the ToteSys tables it is built from (checked against the table config before any extract).

The tables themselves are made by include/sql/warehouse/migrations/ and filled by the model SQL
beside them; tests check this declaration against both.
"""

from __future__ import annotations

DIMENSIONS = (
    "dim_date",
    "dim_staff",
    "dim_location",
    "dim_currency",
    "dim_design",
    "dim_counterparty",
    "dim_payment_type",
    "dim_transaction",
)
FACTS = ("fact_sales_order", "fact_purchase_order", "fact_payment")
STAR = DIMENSIONS + FACTS
# The key of each star table (facts: the source id and the version), for exports and checks.
STAR_KEYS = {
    "dim_date": ("date_id",),
    "dim_staff": ("staff_id",),
    "dim_location": ("location_id",),
    "dim_currency": ("currency_id",),
    "dim_design": ("design_id",),
    "dim_counterparty": ("counterparty_id",),
    "dim_payment_type": ("payment_type_id",),
    "dim_transaction": ("transaction_id",),
    "fact_sales_order": ("sales_order_id", "last_updated_date", "last_updated_time"),
    "fact_purchase_order": ("purchase_order_id", "last_updated_date", "last_updated_time"),
    "fact_payment": ("payment_id", "last_updated_date", "last_updated_time"),
}
# The ToteSys tables the star is built from: their primary key, the columns their landing tables
# hold (migrations/001), and what they feed. The model orders versions by MODEL_CURSOR.
MODEL_CURSOR = "last_updated"
MODEL_SOURCES = {
    "address": ("address_id", ("address_line_1", "address_line_2", "district", "city", "postal_code",
                               "country", "phone"), ("dim_location", "dim_counterparty")),
    "department": ("department_id", ("department_name", "location", "manager"), ("dim_staff",)),
    "staff": ("staff_id", ("first_name", "last_name", "department_id", "email_address"), ("dim_staff",)),
    "currency": ("currency_id", ("currency_code",), ("dim_currency",)),
    "design": ("design_id", ("design_name", "file_location", "file_name"), ("dim_design",)),
    "counterparty": ("counterparty_id", ("counterparty_legal_name", "legal_address_id", "commercial_contact",
                                         "delivery_contact"), ("dim_counterparty",)),
    "payment_type": ("payment_type_id", ("payment_type_name",), ("dim_payment_type",)),
    "sales_order": ("sales_order_id", ("design_id", "staff_id", "counterparty_id", "units_sold", "unit_price",
                                       "currency_id", "agreed_delivery_date", "agreed_payment_date",
                                       "agreed_delivery_location_id"), ("fact_sales_order", "dim_date")),
    "purchase_order": ("purchase_order_id", ("staff_id", "counterparty_id", "item_code", "item_quantity",
                                             "item_unit_price", "currency_id", "agreed_delivery_date",
                                             "agreed_payment_date", "agreed_delivery_location_id"),
                       ("fact_purchase_order", "dim_date")),
    "transaction": ("transaction_id", ("transaction_type", "sales_order_id", "purchase_order_id"),
                    ("dim_transaction",)),
    "payment": ("payment_id", ("transaction_id", "counterparty_id", "payment_amount", "currency_id",
                               "payment_type_id", "paid", "payment_date", "company_ac_number",
                               "counterparty_ac_number"), ("fact_payment", "dim_date")),
}  # fmt: skip

# The dimension row each fact column must find (dates: dim_date).
FACT_REFERENCES = {
    "fact_sales_order": {
        "sales_staff_id": ("dim_staff", "staff_id"),
        "counterparty_id": ("dim_counterparty", "counterparty_id"),
        "currency_id": ("dim_currency", "currency_id"),
        "design_id": ("dim_design", "design_id"),
        "agreed_delivery_location_id": ("dim_location", "location_id"),
        "created_date": ("dim_date", "date_id"),
        "last_updated_date": ("dim_date", "date_id"),
        "agreed_payment_date": ("dim_date", "date_id"),
        "agreed_delivery_date": ("dim_date", "date_id"),
    },
    "fact_purchase_order": {
        "staff_id": ("dim_staff", "staff_id"),
        "counterparty_id": ("dim_counterparty", "counterparty_id"),
        "currency_id": ("dim_currency", "currency_id"),
        "agreed_delivery_location_id": ("dim_location", "location_id"),
        "created_date": ("dim_date", "date_id"),
        "last_updated_date": ("dim_date", "date_id"),
        "agreed_payment_date": ("dim_date", "date_id"),
        "agreed_delivery_date": ("dim_date", "date_id"),
    },
    "fact_payment": {
        "transaction_id": ("dim_transaction", "transaction_id"),
        "counterparty_id": ("dim_counterparty", "counterparty_id"),
        "currency_id": ("dim_currency", "currency_id"),
        "payment_type_id": ("dim_payment_type", "payment_type_id"),
        "created_date": ("dim_date", "date_id"),
        "last_updated_date": ("dim_date", "date_id"),
        "payment_date": ("dim_date", "date_id"),
    },
}


def covered_keys(table: str, window_sql: str) -> str:
    """SQL: the keys of star table `table` that a window covers (`staging.<table>_window`, from
    migrations/002: built from what it landed, whoever modelled them). `window_sql`: the window's
    name as an SQL literal."""
    keys = ", ".join(STAR_KEYS[table])
    return f"SELECT {keys} FROM staging.{table}_window WHERE window_name = {window_sql}"


def covered_rows(table: str, window_sql: str) -> str:
    """SQL: the rows of star table `table` that a window covers (what its export and gate read)."""
    return (
        f"SELECT * FROM {table} WHERE ({', '.join(STAR_KEYS[table])}) IN ({covered_keys(table, window_sql)})"
    )


def check_model_sources(specs, columns: dict[str, list[str]]) -> list[str]:
    """What in the table config would starve or break the star model (empty: nothing).

    `specs`: the config's TableSpecs; `columns`: each table's extracted columns. Every table the
    star is built from must be extracted, with its primary key, the `last_updated` cursor (the
    model's version: a `created_at` cursor never sees an update), and every column its landing
    table holds.
    """
    by_name = {spec.name: spec for spec in specs}
    problems = []
    for table, (primary_key, needed, feeds) in MODEL_SOURCES.items():
        spec = by_name.get(table)
        if spec is None:
            problems.append(
                f"table {table!r} is missing: {', '.join(feeds)} {'is' if len(feeds) == 1 else 'are'} built "
                "from it, and without it would silently stop changing"
            )
            continue
        if spec.primary_key != primary_key:
            problems.append(
                f"table {table!r}: primary_key is {spec.primary_key!r}; the star keys it by {primary_key!r}"
            )
        if spec.cursor != MODEL_CURSOR:
            problems.append(
                f"table {table!r}: cursor is {spec.cursor!r}; the star orders versions by {MODEL_CURSOR!r}, "
                f"and any other cursor misses updated rows (a created_at cursor never sees an update)"
            )
        missing = [c for c in (primary_key, *needed, "created_at", MODEL_CURSOR) if c not in columns[table]]
        if missing:
            problems.append(
                f"table {table!r}: columns {', '.join(missing)} are not extracted; "
                f"{', '.join(feeds)} {'needs' if len(feeds) == 1 else 'need'} them"
            )
    return problems
