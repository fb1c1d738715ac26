"""totesys_etl: incremental extract of changed ToteSys rows to the ingestion bucket."""
