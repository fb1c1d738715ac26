-- One pipe's state as JSON ({"executionState", "pendingFileCount", "oldestFileTimestamp",
-- "error", ...}); only its owner (the loader role) or a role with MONITOR on it may read it.
SELECT SYSTEM$PIPE_STATUS(%(pipe)s) AS PIPE_STATUS;
