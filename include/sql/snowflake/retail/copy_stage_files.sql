-- Load the retail stage files into the raw tables: users from user/, transactions from
-- transactions/, each as CSV with a header or as JSON lines (retail_data_generator writes either).
-- Load metadata skips files loaded before (a pipe keeps its own: pipes or this, not both); ON_ERROR =
-- SKIP_FILE as for the curated events: a bad file is reported by name and the others load.
COPY INTO {{ db }}.RETAIL.USERS_RAW
  (USER_ID, FIRST_NAME, LAST_NAME, EMAIL, COUNTRY, CITY, SIGNUP_TS, MARKETING_OPT_IN, FILE_NAME, LOADED_AT)
FROM (
  SELECT $1, $2, $3, $4, $5, $6, $7, $8, METADATA$FILENAME, METADATA$START_SCAN_TIME
  FROM @{{ db }}.RETAIL.RETAIL_STAGE/user/
)
FILE_FORMAT = (TYPE = CSV SKIP_HEADER = 1 FIELD_OPTIONALLY_ENCLOSED_BY = '"')
PATTERN = '.*[.]csv'
ON_ERROR = SKIP_FILE;

COPY INTO {{ db }}.RETAIL.USERS_RAW
  (USER_ID, FIRST_NAME, LAST_NAME, EMAIL, COUNTRY, CITY, SIGNUP_TS, MARKETING_OPT_IN, FILE_NAME, LOADED_AT)
FROM (
  SELECT $1:user_id::VARCHAR, $1:first_name::VARCHAR, $1:last_name::VARCHAR, $1:email::VARCHAR,
    $1:country::VARCHAR, $1:city::VARCHAR, $1:signup_ts::TIMESTAMP_TZ, $1:marketing_opt_in::BOOLEAN,
    METADATA$FILENAME, METADATA$START_SCAN_TIME
  FROM @{{ db }}.RETAIL.RETAIL_STAGE/user/
)
FILE_FORMAT = (TYPE = JSON)
PATTERN = '.*[.]json'
ON_ERROR = SKIP_FILE;

COPY INTO {{ db }}.RETAIL.TRANSACTIONS_RAW
  (TRANSACTION_ID, USER_ID, PRODUCT_ID, PRODUCT_NAME, CATEGORY, QUANTITY, UNIT_PRICE, CURRENCY,
   PAYMENT_METHOD, TRANSACTION_TS, FILE_NAME, LOADED_AT)
FROM (
  SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, METADATA$FILENAME, METADATA$START_SCAN_TIME
  FROM @{{ db }}.RETAIL.RETAIL_STAGE/transactions/
)
FILE_FORMAT = (TYPE = CSV SKIP_HEADER = 1 FIELD_OPTIONALLY_ENCLOSED_BY = '"')
PATTERN = '.*[.]csv'
ON_ERROR = SKIP_FILE;

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
FILE_FORMAT = (TYPE = JSON)
PATTERN = '.*[.]json'
ON_ERROR = SKIP_FILE;
