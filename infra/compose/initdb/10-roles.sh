# Sourced by the postgres image's entrypoint on the first start (an empty data directory):
# the migrator and runtime roles and the `billing` database, as infra/sql/roles.sql documents.
psql -v ON_ERROR_STOP=1 -d postgres \
  -v migrator_password="$BILLING_MIGRATOR_PASSWORD" \
  -v runtime_password="$BILLING_RUNTIME_PASSWORD" \
  -f /billing/roles.sql
