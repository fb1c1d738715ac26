-- Claim the order events the merge rejected that nobody has reported yet, then return them: the
-- reporter (a try of curated_to_snowflake.check_loads or of snowflake_health) names them once.
-- One transaction: a claim is never left without the rows it claimed being returned.
UPDATE {{ db }}.EVENTS.ORDER_REJECTS
SET REPORTED_BY = %(reporter)s, REPORTED_AT = CURRENT_TIMESTAMP()
WHERE REPORTED_BY IS NULL;
SELECT FILE_NAME, FILE_ROW_NUMBER, REASON
FROM {{ db }}.EVENTS.ORDER_REJECTS
WHERE REPORTED_BY = %(reporter)s
ORDER BY LOADED_AT, FILE_NAME, FILE_ROW_NUMBER;
