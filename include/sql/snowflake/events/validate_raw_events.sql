-- The Param validate_only: parse every curated file and return its errors, loading nothing.
-- VALIDATION_MODE cannot be combined with a COPY transformation, so it reads into the one-column
-- RAW_EVENTS_CHECK table (never loaded) with the same file format and pattern as the load.
COPY INTO {{ db }}.EVENTS.RAW_EVENTS_CHECK
FROM @{{ db }}.EVENTS.CURATED_STAGE
FILE_FORMAT = (TYPE = JSON)
PATTERN = '.*[.]json'
VALIDATION_MODE = RETURN_ERRORS;
