-- Flatten order events ({"order_id", "customer": {"id", "country"}, "currency", "total",
-- "ordered_at", "items": [{"sku", "qty", "price"}]}) from the source into ORDERS and ORDER_ITEMS.
-- The source is RAW_EVENTS_PENDING (Airflow) or the stream on RAW_EVENTS (the Snowflake task,
-- which runs these statements in one transaction).
-- An order event is a document with an order_id key. Fields are typed with TRY_CAST (a plain cast
-- raises on a real account and would fail every run on the same row): an event that does not
-- type goes to ORDER_REJECTS with its reason, once, and the others are flattened.
-- The newest version of an order is the producer's and S3's word, never the load order: the
-- greatest (ordered_at, FILE_LAST_MODIFIED, FILE_NAME, FILE_ROW_NUMBER). A row already as new
-- is left alone, so a rerun, an overlap or an old event loaded late changes nothing.
{#- order_events(): every order event of the source, typed, with REASON (NULL when it types). #}
{%- macro documents() -%}
(
    SELECT
      r.V, r.FILE_NAME, r.FILE_LAST_MODIFIED, r.FILE_ROW_NUMBER, r.LOADED_AT,
      TRY_CAST(r.V:order_id::VARCHAR AS NUMBER(38, 0)) AS ORDER_ID,
      r.V:customer.id::VARCHAR AS CUSTOMER_ID,
      r.V:customer.country::VARCHAR AS COUNTRY,
      r.V:currency::VARCHAR AS CURRENCY,
      TRY_CAST(r.V:total::VARCHAR AS NUMBER(12, 2)) AS TOTAL,
      TRY_CAST(r.V:ordered_at::VARCHAR AS TIMESTAMP_TZ) AS ORDERED_AT,
      IFF(IS_ARRAY(r.V:items), r.V:items, NULL) AS ITEMS,
      IFF(IS_ARRAY(r.V:items), ARRAY_SIZE(r.V:items), NULL) AS ITEM_COUNT,
      IFF(TRY_CAST(r.V:order_id::VARCHAR AS NUMBER(38, 0)) IS NULL
          OR TRY_CAST(r.V:order_id::VARCHAR AS NUMBER(38, 6)) <> TRY_CAST(r.V:order_id::VARCHAR AS NUMBER(38, 0)),
          '; order_id is null or not a whole number', '')
      || IFF(LENGTH(r.V:customer.country::VARCHAR) > 2, '; customer.country is longer than 2 characters', '')
      || IFF(LENGTH(r.V:currency::VARCHAR) > 3, '; currency is longer than 3 characters', '')
      || IFF(r.V:total::VARCHAR IS NOT NULL AND TRY_CAST(r.V:total::VARCHAR AS NUMBER(12, 2)) IS NULL,
             '; total is not a NUMBER(12, 2)', '')
      || IFF(TRY_CAST(r.V:ordered_at::VARCHAR AS TIMESTAMP_TZ) IS NULL,
             '; ordered_at is missing or not a timestamp', '')
      || IFF(r.V:items::VARCHAR IS NOT NULL AND NOT IS_ARRAY(r.V:items), '; items is not an array', '')
      AS FIELD_ERRORS
    FROM {{ source }} AS r
    WHERE r.V:order_id IS NOT NULL
  )
{%- endmacro %}
{%- macro order_events() -%}
(
    SELECT
      d.*,
      NULLIF(SUBSTR(d.FIELD_ERRORS || IFF(b.FIRST_BAD_LINE IS NULL, '',
        '; items[' || b.FIRST_BAD_LINE::VARCHAR || ']: qty is not a NUMBER(9, 0) or price not a NUMBER(12, 2)'), 3), '')
      AS REASON
    FROM {{ documents() }} AS d
    LEFT JOIN (
      SELECT l.FILE_NAME, l.FILE_ROW_NUMBER, l.LOADED_AT, MIN(i.INDEX) AS FIRST_BAD_LINE
      FROM {{ documents() }} AS l, LATERAL FLATTEN(input => l.ITEMS) AS i
      WHERE (i.VALUE:qty::VARCHAR IS NOT NULL AND TRY_CAST(i.VALUE:qty::VARCHAR AS NUMBER(9, 0)) IS NULL)
        OR (i.VALUE:price::VARCHAR IS NOT NULL AND TRY_CAST(i.VALUE:price::VARCHAR AS NUMBER(12, 2)) IS NULL)
      GROUP BY l.FILE_NAME, l.FILE_ROW_NUMBER, l.LOADED_AT
    ) AS b
      ON b.FILE_NAME = d.FILE_NAME AND b.LOADED_AT = d.LOADED_AT
      AND b.FILE_ROW_NUMBER IS NOT DISTINCT FROM d.FILE_ROW_NUMBER
  )
{%- endmacro %}
{#- s is newer than t: (ordered_at, file last modified, file name, row), a missing one oldest. #}
{%- macro newer(s, t) -%}
({{ t }}.ORDERED_AT IS NULL OR {{ s }}.ORDERED_AT > {{ t }}.ORDERED_AT
    OR ({{ s }}.ORDERED_AT = {{ t }}.ORDERED_AT AND (
      COALESCE({{ s }}.FILE_LAST_MODIFIED, '1970-01-01'::TIMESTAMP_NTZ) > COALESCE({{ t }}.FILE_LAST_MODIFIED, '1970-01-01'::TIMESTAMP_NTZ)
      OR (COALESCE({{ s }}.FILE_LAST_MODIFIED, '1970-01-01'::TIMESTAMP_NTZ) = COALESCE({{ t }}.FILE_LAST_MODIFIED, '1970-01-01'::TIMESTAMP_NTZ)
        AND ({{ s }}.FILE_NAME > {{ t }}.FILE_NAME
          OR ({{ s }}.FILE_NAME = {{ t }}.FILE_NAME AND COALESCE({{ s }}.FILE_ROW_NUMBER, 0) > COALESCE({{ t }}.FILE_ROW_NUMBER, 0)))))))
{%- endmacro %}

-- 1. Order events that do not type, each once (a rerun over the same rows adds nothing).
INSERT INTO {{ db }}.EVENTS.ORDER_REJECTS (FILE_NAME, FILE_ROW_NUMBER, REASON, V, LOADED_AT, REJECTED_AT)
SELECT e.FILE_NAME, e.FILE_ROW_NUMBER, e.REASON, e.V, e.LOADED_AT, CURRENT_TIMESTAMP()
FROM {{ order_events() }} AS e
WHERE e.REASON IS NOT NULL
  AND NOT EXISTS (
    SELECT 1 FROM {{ db }}.EVENTS.ORDER_REJECTS AS x
    WHERE x.FILE_NAME = e.FILE_NAME AND x.LOADED_AT = e.LOADED_AT
      AND x.FILE_ROW_NUMBER IS NOT DISTINCT FROM e.FILE_ROW_NUMBER
  );

-- 2. The newest version of each order the source holds, if newer than the one in ORDERS.
MERGE INTO {{ db }}.EVENTS.ORDERS AS t
USING (
  SELECT
    e.ORDER_ID, e.CUSTOMER_ID, e.COUNTRY, e.CURRENCY, e.TOTAL, e.ORDERED_AT, e.ITEM_COUNT,
    e.FILE_NAME, e.FILE_LAST_MODIFIED, e.FILE_ROW_NUMBER, e.LOADED_AT
  FROM {{ order_events() }} AS e
  WHERE e.REASON IS NULL
  QUALIFY ROW_NUMBER() OVER (
    PARTITION BY e.ORDER_ID
    ORDER BY e.ORDERED_AT DESC, e.FILE_LAST_MODIFIED DESC NULLS LAST, e.FILE_NAME DESC,
      e.FILE_ROW_NUMBER DESC NULLS LAST, e.LOADED_AT DESC
  ) = 1
) AS s
ON t.ORDER_ID = s.ORDER_ID
WHEN MATCHED AND {{ newer("s", "t") }} THEN UPDATE SET
  CUSTOMER_ID = s.CUSTOMER_ID, COUNTRY = s.COUNTRY, CURRENCY = s.CURRENCY, TOTAL = s.TOTAL,
  ORDERED_AT = s.ORDERED_AT, ITEM_COUNT = s.ITEM_COUNT, FILE_NAME = s.FILE_NAME,
  FILE_LAST_MODIFIED = s.FILE_LAST_MODIFIED, FILE_ROW_NUMBER = s.FILE_ROW_NUMBER, LOADED_AT = s.LOADED_AT
WHEN NOT MATCHED THEN INSERT
  (ORDER_ID, CUSTOMER_ID, COUNTRY, CURRENCY, TOTAL, ORDERED_AT, ITEM_COUNT, FILE_NAME,
   FILE_LAST_MODIFIED, FILE_ROW_NUMBER, LOADED_AT)
  VALUES (s.ORDER_ID, s.CUSTOMER_ID, s.COUNTRY, s.CURRENCY, s.TOTAL, s.ORDERED_AT, s.ITEM_COUNT,
          s.FILE_NAME, s.FILE_LAST_MODIFIED, s.FILE_ROW_NUMBER, s.LOADED_AT);

-- 3. The lines of the version each order now has in ORDERS (an older event's lines never land).
MERGE INTO {{ db }}.EVENTS.ORDER_ITEMS AS t
USING (
  SELECT
    w.ORDER_ID,
    i.INDEX + 1 AS LINE_NUMBER,
    i.VALUE:sku::VARCHAR AS SKU,
    TRY_CAST(i.VALUE:qty::VARCHAR AS NUMBER(9, 0)) AS QUANTITY,
    TRY_CAST(i.VALUE:price::VARCHAR AS NUMBER(12, 2)) AS UNIT_PRICE,
    w.LOADED_AT
  FROM (
    SELECT e.ORDER_ID, e.ITEMS, e.LOADED_AT
    FROM {{ order_events() }} AS e
    JOIN {{ db }}.EVENTS.ORDERS AS o
      ON o.ORDER_ID = e.ORDER_ID AND o.FILE_NAME = e.FILE_NAME AND o.LOADED_AT = e.LOADED_AT
      AND o.FILE_ROW_NUMBER IS NOT DISTINCT FROM e.FILE_ROW_NUMBER
    WHERE e.REASON IS NULL
  ) AS w, LATERAL FLATTEN(input => w.ITEMS) AS i
  QUALIFY ROW_NUMBER() OVER (PARTITION BY w.ORDER_ID, i.INDEX ORDER BY w.LOADED_AT DESC) = 1
) AS s
ON t.ORDER_ID = s.ORDER_ID AND t.LINE_NUMBER = s.LINE_NUMBER
WHEN MATCHED AND (t.SKU IS DISTINCT FROM s.SKU OR t.QUANTITY IS DISTINCT FROM s.QUANTITY
                  OR t.UNIT_PRICE IS DISTINCT FROM s.UNIT_PRICE) THEN UPDATE SET
  SKU = s.SKU, QUANTITY = s.QUANTITY, UNIT_PRICE = s.UNIT_PRICE, LOADED_AT = s.LOADED_AT
WHEN NOT MATCHED THEN INSERT (ORDER_ID, LINE_NUMBER, SKU, QUANTITY, UNIT_PRICE, LOADED_AT)
  VALUES (s.ORDER_ID, s.LINE_NUMBER, s.SKU, s.QUANTITY, s.UNIT_PRICE, s.LOADED_AT);

-- 4. An order whose newest version has fewer items: its lines past ITEM_COUNT are no longer part
-- of it. Only the orders of this source: their ids and item counts are picked out first, and only
-- those orders' lines are joined (the cost follows the batch, not the tables).
DELETE FROM {{ db }}.EVENTS.ORDER_ITEMS AS i
USING (
  SELECT o.ORDER_ID, o.ITEM_COUNT
  FROM {{ db }}.EVENTS.ORDERS AS o
  JOIN (SELECT DISTINCT e.ORDER_ID FROM {{ order_events() }} AS e WHERE e.REASON IS NULL) AS b
    ON b.ORDER_ID = o.ORDER_ID
) AS o
WHERE i.ORDER_ID = o.ORDER_ID AND i.LINE_NUMBER > COALESCE(o.ITEM_COUNT, 0);

-- 5. The merge has seen the source up to its newest LOADED_AT: orders, rejects and other events.
MERGE INTO {{ db }}.EVENTS.MERGE_WATERMARKS AS t
USING (SELECT 'ORDERS' AS TARGET, MAX(r.LOADED_AT) AS LOADED_UP_TO FROM {{ source }} AS r) AS s
ON t.TARGET = s.TARGET
WHEN MATCHED AND s.LOADED_UP_TO > t.LOADED_UP_TO THEN UPDATE SET LOADED_UP_TO = s.LOADED_UP_TO
WHEN NOT MATCHED AND s.LOADED_UP_TO IS NOT NULL THEN INSERT (TARGET, LOADED_UP_TO)
  VALUES (s.TARGET, s.LOADED_UP_TO);
