-- Tasks that merge each stream's delta into its target, with the same MERGE the Airflow DAGs run
-- (included from events/ and retail/, its source the stream). They run only when their stream has
-- data. OR REPLACE: a changed MERGE reaches the task (its stream keeps its offset); a task is
-- created suspended, then resumed.
CREATE OR REPLACE TASK {{ db }}.EVENTS.MERGE_ORDERS
  WAREHOUSE = {{ task_warehouse }}
  SCHEDULE = '{{ task_schedule }}'
  WHEN SYSTEM$STREAM_HAS_DATA('{{ db }}.EVENTS.RAW_EVENTS_STREAM')
  AS
  EXECUTE IMMEDIATE $$
  BEGIN
    BEGIN TRANSACTION;
{% with source = db ~ ".EVENTS.RAW_EVENTS_STREAM" %}{% filter indent(4, first=True) %}{% include "events/merge_orders.sql" %}{% endfilter %}{% endwith %}
    COMMIT;
  END;
  $$;

CREATE OR REPLACE TASK {{ db }}.RETAIL.MERGE_USERS
  WAREHOUSE = {{ task_warehouse }}
  SCHEDULE = '{{ task_schedule }}'
  WHEN SYSTEM$STREAM_HAS_DATA('{{ db }}.RETAIL.USERS_RAW_STREAM')
  AS
{% with source = db ~ ".RETAIL.USERS_RAW_STREAM" %}{% include "retail/merge_users.sql" %}{% endwith %}

CREATE OR REPLACE TASK {{ db }}.RETAIL.MERGE_TRANSACTIONS
  WAREHOUSE = {{ task_warehouse }}
  SCHEDULE = '{{ task_schedule }}'
  WHEN SYSTEM$STREAM_HAS_DATA('{{ db }}.RETAIL.TRANSACTIONS_RAW_STREAM')
  AS
{% with source = db ~ ".RETAIL.TRANSACTIONS_RAW_STREAM" %}{% include "retail/merge_transactions.sql" %}{% endwith %}

ALTER TASK {{ db }}.EVENTS.MERGE_ORDERS RESUME;
ALTER TASK {{ db }}.RETAIL.MERGE_USERS RESUME;
ALTER TASK {{ db }}.RETAIL.MERGE_TRANSACTIONS RESUME;
