-- The database and one schema per pipeline. Rerunnable.
-- Names: {{ db }} (Variable conveyor_snowflake.database, default CONVEYOR).
CREATE DATABASE IF NOT EXISTS {{ db }};
CREATE SCHEMA IF NOT EXISTS {{ db }}.EVENTS COMMENT = 'curated S3 events: raw VARIANT rows and the typed tables flattened from them';
CREATE SCHEMA IF NOT EXISTS {{ db }}.RETAIL COMMENT = 'retail stage files: raw tables and merged targets';
CREATE SCHEMA IF NOT EXISTS {{ db }}.TOTESYS COMMENT = 'ToteSys star schema';
