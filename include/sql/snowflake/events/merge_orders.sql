-- Flatten order events ({"order_id", "customer": {"id", "country"}, "currency", "total",
-- "ordered_at", "items": [{"sku", "qty", "price"}]}) from the source into ORDERS and ORDER_ITEMS.
-- The source is RAW_EVENTS_PENDING (Airflow) or the stream on RAW_EVENTS (the Snowflake task).
-- Idempotent: the newest load of each order (and line) wins, and a row already as new is left
-- alone, so a rerun or an overlap changes nothing. ORDER_ITEMS first: ORDERS' newest LOADED_AT
-- is what RAW_EVENTS_PENDING starts from.
MERGE INTO {{ db }}.EVENTS.ORDER_ITEMS AS t
USING (
  SELECT
    r.V:order_id::NUMBER(38, 0) AS ORDER_ID,
    i.INDEX + 1 AS LINE_NUMBER,
    i.VALUE:sku::VARCHAR AS SKU,
    i.VALUE:qty::NUMBER(9, 0) AS QUANTITY,
    i.VALUE:price::NUMBER(12, 2) AS UNIT_PRICE,
    r.LOADED_AT AS LOADED_AT
  FROM {{ source }} AS r, LATERAL FLATTEN(input => r.V:items) AS i
  WHERE r.V:order_id IS NOT NULL
  QUALIFY ROW_NUMBER() OVER (
    PARTITION BY r.V:order_id::NUMBER(38, 0), i.INDEX ORDER BY r.LOADED_AT DESC, r.FILE_NAME DESC
  ) = 1
) AS s
ON t.ORDER_ID = s.ORDER_ID AND t.LINE_NUMBER = s.LINE_NUMBER
WHEN MATCHED AND s.LOADED_AT > t.LOADED_AT THEN UPDATE SET
  SKU = s.SKU, QUANTITY = s.QUANTITY, UNIT_PRICE = s.UNIT_PRICE, LOADED_AT = s.LOADED_AT
WHEN NOT MATCHED THEN INSERT (ORDER_ID, LINE_NUMBER, SKU, QUANTITY, UNIT_PRICE, LOADED_AT)
  VALUES (s.ORDER_ID, s.LINE_NUMBER, s.SKU, s.QUANTITY, s.UNIT_PRICE, s.LOADED_AT);

MERGE INTO {{ db }}.EVENTS.ORDERS AS t
USING (
  SELECT
    V:order_id::NUMBER(38, 0) AS ORDER_ID,
    V:customer.id::VARCHAR AS CUSTOMER_ID,
    V:customer.country::VARCHAR AS COUNTRY,
    V:currency::VARCHAR AS CURRENCY,
    V:total::NUMBER(12, 2) AS TOTAL,
    TRY_CAST(V:ordered_at::VARCHAR AS TIMESTAMP_TZ) AS ORDERED_AT,
    ARRAY_SIZE(V:items) AS ITEM_COUNT,
    FILE_NAME,
    LOADED_AT
  FROM {{ source }}
  WHERE V:order_id IS NOT NULL
  QUALIFY ROW_NUMBER() OVER (PARTITION BY V:order_id::NUMBER(38, 0) ORDER BY LOADED_AT DESC, FILE_NAME DESC) = 1
) AS s
ON t.ORDER_ID = s.ORDER_ID
WHEN MATCHED AND s.LOADED_AT > t.LOADED_AT THEN UPDATE SET
  CUSTOMER_ID = s.CUSTOMER_ID, COUNTRY = s.COUNTRY, CURRENCY = s.CURRENCY, TOTAL = s.TOTAL,
  ORDERED_AT = s.ORDERED_AT, ITEM_COUNT = s.ITEM_COUNT, FILE_NAME = s.FILE_NAME, LOADED_AT = s.LOADED_AT
WHEN NOT MATCHED THEN INSERT
  (ORDER_ID, CUSTOMER_ID, COUNTRY, CURRENCY, TOTAL, ORDERED_AT, ITEM_COUNT, FILE_NAME, LOADED_AT)
  VALUES (s.ORDER_ID, s.CUSTOMER_ID, s.COUNTRY, s.CURRENCY, s.TOTAL, s.ORDERED_AT, s.ITEM_COUNT,
          s.FILE_NAME, s.LOADED_AT);

-- An order sent again with fewer items: its lines past ITEM_COUNT are no longer part of it.
DELETE FROM {{ db }}.EVENTS.ORDER_ITEMS AS i
USING {{ db }}.EVENTS.ORDERS AS o
WHERE i.ORDER_ID = o.ORDER_ID AND i.LINE_NUMBER > COALESCE(o.ITEM_COUNT, 0);
