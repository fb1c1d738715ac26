-- Migration 003: schema drift (conveyor.totesys.drift).
--
-- staging.source_schemas   each ToteSys table's schema as the warehouse last accepted it (columns
--                          with their exact types and nullability, the primary key): what the next
--                          run's live catalog is compared with. Written in the same transaction as
--                          the landing tables' ALTERs, so the two never disagree.
-- staging.schema_changes   every change detected, with what the policy did: `carry` (the landing
--                          table followed it) or `fail` (the run stopped before anything landed);
--                          a table the tables config adds or removes is a change too.
--                          A failure is logged once per reference schema, not once per run.
--                          Each row is also one message on the notifications topic (an outbox:
--                          published after the run's reconcile commits, then marked with the
--                          message's id; a row still unmarked is published by the next run).

CREATE TABLE IF NOT EXISTS staging.source_schemas (
    table_name   text PRIMARY KEY,
    schema       jsonb NOT NULL,
    window_name  text NOT NULL,        -- the window of the run that accepted it
    accepted_at  timestamptz NOT NULL  -- that run's data interval end (never the clock)
);

CREATE TABLE IF NOT EXISTS staging.schema_changes (
    change_id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    table_name     text NOT NULL,
    column_name    text,              -- NULL for a table added to or removed from the config
    change         text NOT NULL CHECK (change IN (
        'added', 'dropped', 'retyped', 'nullability', 'primary_key', 'table_added', 'table_removed'
    )),
    old_value      text,
    new_value      text,
    window_name    text NOT NULL,      -- the window of the run that detected it
    action         text NOT NULL CHECK (action IN ('carry', 'fail')),
    detail         text NOT NULL,      -- what the policy did, or for a failure what to do
    compared_with  text NOT NULL,      -- the window whose accepted schema it was compared with
    detected_at    timestamptz NOT NULL, -- the run's data interval end (never the clock)
    run_id         text,               -- the run that detected it
    message_id     text,               -- its SNS message's id; NULL: not on the topic yet
    notified_by    text                -- the run that published it
);
CREATE UNIQUE INDEX IF NOT EXISTS schema_changes_failed_once ON staging.schema_changes
    (table_name, column_name, change, coalesce(old_value, ''), coalesce(new_value, ''), compared_with)
    WHERE action = 'fail';
CREATE INDEX IF NOT EXISTS schema_changes_unnotified ON staging.schema_changes (change_id)
    WHERE message_id IS NULL;
