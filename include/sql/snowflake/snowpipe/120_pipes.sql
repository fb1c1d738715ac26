-- Snowpipe, for those who load without Airflow: each pipe runs its COPY when S3 notifies the
-- topic Terraform created (curated-events, stage-events). Use the pipes or the Airflow loads, not
-- both: a pipe keeps its own load history (14 days), which bulk COPY does not see, and the other
-- way round, so both would load every file twice into the raw tables.
-- AUTO_INGEST pipes need the storage integration's IAM role allowed to subscribe to the topics.
CREATE PIPE IF NOT EXISTS {{ db }}.EVENTS.RAW_EVENTS_PIPE
  AUTO_INGEST = TRUE
  AWS_SNS_TOPIC = '{{ topics.curated }}'
  AS
  COPY INTO {{ db }}.EVENTS.RAW_EVENTS (V, FILE_NAME, FILE_LAST_MODIFIED, FILE_ROW_NUMBER, LOADED_AT)
  FROM (
    SELECT $1, METADATA$FILENAME, METADATA$FILE_LAST_MODIFIED, METADATA$FILE_ROW_NUMBER, METADATA$START_SCAN_TIME
    FROM @{{ db }}.EVENTS.CURATED_STAGE
  )
  FILE_FORMAT = (FORMAT_NAME = '{{ db }}.EVENTS.JSON_DOCUMENTS')
  PATTERN = '.*[.]json';

CREATE PIPE IF NOT EXISTS {{ db }}.RETAIL.USERS_CSV_PIPE
  AUTO_INGEST = TRUE
  AWS_SNS_TOPIC = '{{ topics.stage }}'
  AS
  COPY INTO {{ db }}.RETAIL.USERS_RAW
    (USER_ID, FIRST_NAME, LAST_NAME, EMAIL, COUNTRY, CITY, SIGNUP_TS, MARKETING_OPT_IN, FILE_NAME, LOADED_AT)
  FROM (
    SELECT $1, $2, $3, $4, $5, $6, $7, $8, METADATA$FILENAME, METADATA$START_SCAN_TIME
    FROM @{{ db }}.RETAIL.RETAIL_STAGE/user/
  )
  FILE_FORMAT = (FORMAT_NAME = '{{ db }}.RETAIL.CSV_WITH_HEADER')
  PATTERN = '.*[.]csv';

CREATE PIPE IF NOT EXISTS {{ db }}.RETAIL.TRANSACTIONS_CSV_PIPE
  AUTO_INGEST = TRUE
  AWS_SNS_TOPIC = '{{ topics.stage }}'
  AS
  COPY INTO {{ db }}.RETAIL.TRANSACTIONS_RAW
    (TRANSACTION_ID, USER_ID, PRODUCT_ID, PRODUCT_NAME, CATEGORY, QUANTITY, UNIT_PRICE, CURRENCY,
     PAYMENT_METHOD, TRANSACTION_TS, FILE_NAME, LOADED_AT)
  FROM (
    SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, METADATA$FILENAME, METADATA$START_SCAN_TIME
    FROM @{{ db }}.RETAIL.RETAIL_STAGE/transactions/
  )
  FILE_FORMAT = (FORMAT_NAME = '{{ db }}.RETAIL.CSV_WITH_HEADER')
  PATTERN = '.*[.]csv';

CREATE PIPE IF NOT EXISTS {{ db }}.RETAIL.USERS_JSON_PIPE
  AUTO_INGEST = TRUE
  AWS_SNS_TOPIC = '{{ topics.stage }}'
  AS
  COPY INTO {{ db }}.RETAIL.USERS_RAW
    (USER_ID, FIRST_NAME, LAST_NAME, EMAIL, COUNTRY, CITY, SIGNUP_TS, MARKETING_OPT_IN, FILE_NAME, LOADED_AT)
  FROM (
    SELECT $1:user_id::VARCHAR, $1:first_name::VARCHAR, $1:last_name::VARCHAR, $1:email::VARCHAR,
      $1:country::VARCHAR, $1:city::VARCHAR, $1:signup_ts::TIMESTAMP_TZ, $1:marketing_opt_in::BOOLEAN,
      METADATA$FILENAME, METADATA$START_SCAN_TIME
    FROM @{{ db }}.RETAIL.RETAIL_STAGE/user/
  )
  FILE_FORMAT = (FORMAT_NAME = '{{ db }}.RETAIL.JSON_LINES')
  PATTERN = '.*[.]json';

CREATE PIPE IF NOT EXISTS {{ db }}.RETAIL.TRANSACTIONS_JSON_PIPE
  AUTO_INGEST = TRUE
  AWS_SNS_TOPIC = '{{ topics.stage }}'
  AS
  COPY INTO {{ db }}.RETAIL.TRANSACTIONS_RAW
    (TRANSACTION_ID, USER_ID, PRODUCT_ID, PRODUCT_NAME, CATEGORY, QUANTITY, UNIT_PRICE, CURRENCY,
     PAYMENT_METHOD, TRANSACTION_TS, FILE_NAME, LOADED_AT)
  FROM (
    SELECT $1:transaction_id::VARCHAR, $1:user_id::VARCHAR, $1:product_id::VARCHAR,
      $1:product_name::VARCHAR, $1:category::VARCHAR, $1:quantity::NUMBER(9, 0),
      $1:unit_price::NUMBER(12, 2), $1:currency::VARCHAR, $1:payment_method::VARCHAR,
      $1:transaction_ts::TIMESTAMP_TZ, METADATA$FILENAME, METADATA$START_SCAN_TIME
    FROM @{{ db }}.RETAIL.RETAIL_STAGE/transactions/
  )
  FILE_FORMAT = (FORMAT_NAME = '{{ db }}.RETAIL.JSON_LINES')
  PATTERN = '.*[.]json';
