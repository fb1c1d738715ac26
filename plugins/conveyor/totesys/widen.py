"""Widening, for conveyor.totesys.drift: a source column whose new type its landing column cannot
hold (int → bigint on an `integer` column, numeric(10,2) → numeric(12,3)) is carried by retyping
the landing column and every star column that holds it (star.yml's `holds`), so its values arrive
exactly, never rounded or out of range.

Postgres refuses to retype a column a view reads, so each view that reads it, directly or through
another view, is found in the catalog (`pg_depend` on the view's rewrite rule), dropped, and
recreated after the ALTER from its own definition (`pg_get_viewdef`), in dependency order, with its
options, owner, comment and grants. All of it runs in drift.reconcile's transaction, under its
advisory lock and `lock_timeout`: a reader's lock makes it fail (and the task retry) after a
bounded wait, and any failure undoes every ALTER.
"""

from __future__ import annotations

from conveyor.totesys.drift import _UNBOUNDED, Change, SchemaDriftError, _digits, classify, landing_type


def holds(have: str, want: str) -> bool:
    """Whether a column of type `have` holds every value of type `want` exactly."""
    return have == want or classify(want, have) == "widening"


def wider(have: str, want: str) -> str | None:
    """The type a column of type `have` becomes to hold `want` too (None: no such type)."""
    if holds(have, want):
        return have
    if holds(want, have):
        return want
    before, after = _digits(have), _digits(want)
    if before and after:  # e.g. numeric(14,2) and numeric(12,3) -> numeric(15,3)
        integer, fraction = max(before[0], after[0]), max(before[1], after[1])
        return "numeric" if _UNBOUNDED in (integer, fraction) else f"numeric({integer + fraction},{fraction})"
    return None


def column_type(conn, relation: str, column: str) -> str | None:
    row = conn.execute(
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = to_regclass(%s) "
        "AND attname = %s AND attnum > 0 AND NOT attisdropped",
        (relation, column),
    ).fetchone()
    return row[0] if row else None


def needed(conn, change: Change) -> list[tuple[str, str, str, str]]:
    """(relation, column, its type, the type it must become) for the landing column and each star
    column that holds the source column (star.yml's `holds`) and cannot hold its new type yet.
    Raises SchemaDriftError naming a star column no type widens to hold it."""
    from conveyor.totesys import star

    wanted = landing_type(change.new)
    columns = [(f"staging.{change.table}_landed", change.column)]
    columns += [(table, column) for table, column in star.holders(change.table, change.column)]
    to_widen = []
    for relation, column in columns:
        have = column_type(conn, relation, column)
        if have is None or holds(have, wanted):
            continue  # no such table yet (its first landing makes it), or it already holds it
        if (new_type := wider(have, wanted)) is None:
            raise SchemaDriftError(
                f"{change.describe()}: {relation}.{column} is {have} and cannot be widened to hold "
                f"{wanted}; restore the type, or migrate {relation}.{column} by hand"
            )
        to_widen.append((relation, column, have, new_type))
    return to_widen


def widen(conn, change: Change) -> list[str]:
    """The landing column and the star columns that hold it widened to the source's new type (each
    with the views that read it dropped and recreated from their own definitions); the DDL, as
    said in the log's detail."""
    return [
        retype(conn, relation, column, have, new_type, change)
        for relation, column, have, new_type in needed(conn, change)
    ]


def dependent_views(conn, relation: str, column: str) -> list[tuple]:
    """Every view that reads `relation.column`, directly or through another view, from the
    catalog (pg_depend on each view's rewrite rule), in the order they can be created: (oid, name,
    kind, definition, options, owner, comment, grants)."""
    return conn.execute(
        """
        WITH RECURSIVE readers (oid, depth) AS (
            SELECT DISTINCT r.ev_class, 1
            FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
            WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
              AND d.refobjid = to_regclass(%(relation)s) AND r.ev_class <> d.refobjid
              AND d.refobjsubid = (SELECT attnum FROM pg_attribute
                                   WHERE attrelid = to_regclass(%(relation)s) AND attname = %(column)s)
            UNION
            SELECT r.ev_class, readers.depth + 1
            FROM readers JOIN pg_depend d ON d.refobjid = readers.oid
            JOIN pg_rewrite r ON r.oid = d.objid
            WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
              AND r.ev_class <> d.refobjid
        )
        SELECT c.oid, format('%%I.%%I', n.nspname, c.relname), c.relkind, pg_get_viewdef(c.oid),
               c.reloptions, pg_get_userbyid(c.relowner), obj_description(c.oid, 'pg_class'),
               (SELECT array_agg(format('GRANT %%s ON %%I.%%I TO %%s%%s', a.privilege_type, n.nspname,
                                        c.relname,
                                        CASE a.grantee WHEN 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END,
                                        CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END))
                FROM aclexplode(c.relacl) AS a WHERE a.grantee <> c.relowner)
        FROM (SELECT oid, max(depth) AS depth FROM readers GROUP BY oid) AS v
        JOIN pg_class c ON c.oid = v.oid JOIN pg_namespace n ON n.oid = c.relnamespace
        ORDER BY v.depth, c.oid
        """,
        {"relation": relation, "column": column},
    ).fetchall()


def retype(conn, relation: str, column: str, have: str, new_type: str, change: Change) -> str:
    """ALTER relation.column TYPE new_type, with every view that reads it dropped first and recreated
    after from its own definition (Postgres refuses to retype a column a view reads); each view
    keeps its options, owner, comment and grants (not column comments, column grants, rules or
    triggers on a view: the warehouse has none). A view its definition no longer makes (e.g. a
    function it calls takes the old type) stops the change: SchemaDriftError, nothing applied."""
    import psycopg
    from psycopg import sql

    views = dependent_views(conn, relation, column)
    if kept := [name for _, name, kind, *_ in views if kind != "v"]:
        raise SchemaDriftError(
            f"{change.describe()}: {relation}.{column} is read by materialized view(s) {', '.join(kept)}; "
            f"drop them, then rerun (and recreate them after)"
        )
    schema, _, name = relation.rpartition(".")
    target = sql.Identifier(schema, name) if schema else sql.Identifier(name)
    if views:
        conn.execute(sql.SQL("DROP VIEW {}").format(sql.SQL(", ").join(sql.SQL(v[1]) for v in views)))
    using = sql.SQL("")
    if have.startswith("timestamp") and "without" in have and "with time" in new_type:
        using = sql.SQL(" USING {} AT TIME ZONE 'UTC'").format(sql.Identifier(column))  # the source's clock
    conn.execute(
        sql.SQL("ALTER TABLE {} ALTER COLUMN {} TYPE {}{}").format(
            target, sql.Identifier(column), sql.SQL(new_type), using
        )
    )
    (me,) = conn.execute("SELECT current_user").fetchone()
    for _, view, _, definition, options, owner, comment, grants in views:
        name = sql.SQL(view)  # quoted by format('%I.%I') in the catalog query
        with_options = sql.SQL(" WITH (" + ", ".join(options) + ")") if options else sql.SQL("")
        try:
            with conn.transaction():  # a savepoint: the error below replaces Postgres's
                conn.execute(
                    sql.SQL("CREATE VIEW ") + name + with_options + sql.SQL(" AS ") + sql.SQL(definition)
                )
        except psycopg.errors.LockNotAvailable:
            raise
        except psycopg.Error as failed:
            raise SchemaDriftError(
                f"{change.describe()}: {view} cannot be recreated over {relation}.{column} as {new_type} "
                f"({failed.diag.message_primary or failed}); restore the type, or change the view by hand; "
                "nothing was changed"
            ) from failed
        if owner != me:
            conn.execute(sql.SQL("ALTER VIEW ") + name + sql.SQL(" OWNER TO ") + sql.Identifier(owner))
        if comment is not None:
            conn.execute(sql.SQL("COMMENT ON VIEW ") + name + sql.SQL(" IS ") + sql.Literal(comment))
        for grant in grants or ():
            conn.execute(grant)
    recreated = f", views recreated: {', '.join(v[1] for v in views)}" if views else ""
    return f"{relation}.{column} {have} → {new_type}{recreated}"
