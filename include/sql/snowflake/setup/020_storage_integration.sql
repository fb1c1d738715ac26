-- By ACCOUNTADMIN (or a role with CREATE INTEGRATION and MANAGE GRANTS): Snowflake's access to
-- the buckets through the IAM role Terraform creates (output snowflake_storage_integration_role_arn),
-- and what the role the loads run as (loader_role) needs beyond the objects it creates and owns.
-- IF NOT EXISTS: recreating an integration changes its external id and breaks the trust policy;
-- the ALTER keeps the id and brings the allowed locations up to date.
-- After it exists: DESC INTEGRATION {{ storage_integration }}; put STORAGE_AWS_IAM_USER_ARN and
-- STORAGE_AWS_EXTERNAL_ID into Terraform (snowflake_iam_user_arn, snowflake_external_id), apply.
CREATE STORAGE INTEGRATION IF NOT EXISTS {{ storage_integration }}
  TYPE = EXTERNAL_STAGE
  STORAGE_PROVIDER = 'S3'
  ENABLED = TRUE
  STORAGE_AWS_ROLE_ARN = '{{ storage_role_arn }}'
  STORAGE_ALLOWED_LOCATIONS = ('s3://{{ buckets.curated }}/', 's3://{{ buckets.stage }}/', 's3://{{ buckets.processed }}/');
ALTER STORAGE INTEGRATION {{ storage_integration }} SET
  STORAGE_AWS_ROLE_ARN = '{{ storage_role_arn }}'
  STORAGE_ALLOWED_LOCATIONS = ('s3://{{ buckets.curated }}/', 's3://{{ buckets.stage }}/', 's3://{{ buckets.processed }}/');
GRANT USAGE ON INTEGRATION {{ storage_integration }} TO ROLE {{ loader_role }};
GRANT CREATE DATABASE ON ACCOUNT TO ROLE {{ loader_role }};
-- Resuming the Snowpipe path's tasks (snowpipe/140_tasks.sql) needs it, and a task runs on its
-- warehouse as its owner (the loader role), which needs USAGE on it or every run fails.
GRANT EXECUTE TASK ON ACCOUNT TO ROLE {{ loader_role }};
GRANT USAGE ON WAREHOUSE {{ task_warehouse }} TO ROLE {{ loader_role }};
