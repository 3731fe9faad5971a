-- The two roles Kefu Billing runs as on a PostgreSQL you run, and its database.
--
--   billing_migrator  owns the database, its schema and every table: `billing migrate` (the
--                     migration Job) and `billing partitions` (the daily CronJob) log in as it.
--   billing_runtime   reads and writes rows, nothing more: `billing serve`, `billing worker` and
--                     the other commands log in as it. It cannot create, alter, drop or truncate
--                     a table, and cannot create anything in any schema.
--
-- Run it as a role that may create roles and databases (a superuser, or the admin role of a
-- managed PostgreSQL), connected to the `postgres` database:
--
--   psql "postgresql://ADMIN@HOST:5432/postgres" -v ON_ERROR_STOP=1 \
--        -v migrator_password="$MIGRATOR_PASSWORD" -v runtime_password="$RUNTIME_PASSWORD" \
--        -f infra/sql/roles.sql
--
-- Optional: -v database=NAME (default billing), -v migrator=NAME, -v runtime=NAME.
-- Running it again is safe: it sets the passwords again (a rotation) and re-grants the runtime
-- role what the migrator made. The passwords travel in the statements: don't run it with
-- log_statement = 'all'.

\if :{?database}
\else
  \set database billing
\endif
\if :{?migrator}
\else
  \set migrator billing_migrator
\endif
\if :{?runtime}
\else
  \set runtime billing_runtime
\endif

SELECT format('CREATE ROLE %I', :'migrator')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'migrator') \gexec
SELECT format('CREATE ROLE %I', :'runtime')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'runtime') \gexec
ALTER ROLE :"migrator" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'migrator_password';
ALTER ROLE :"runtime" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'runtime_password';

-- The database belongs to the migrator; nobody else may connect to it or make temporary tables.
SELECT format('CREATE DATABASE %I OWNER %I', :'database', :'migrator')
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'database') \gexec
ALTER DATABASE :"database" OWNER TO :"migrator";
REVOKE ALL ON DATABASE :"database" FROM PUBLIC;
GRANT CONNECT ON DATABASE :"database" TO :"runtime";

\connect :"database"

-- The schema too; only its owner creates anything in it (PostgreSQL before 15 let everyone).
ALTER SCHEMA public OWNER TO :"migrator";
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO :"runtime";

-- Rows, not shapes: what the migrator makes from now on (tables, the monthly partitions,
-- sequences) the runtime role may read and write, and what it made already.
ALTER DEFAULT PRIVILEGES FOR ROLE :"migrator" IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO :"runtime";
ALTER DEFAULT PRIVILEGES FOR ROLE :"migrator" IN SCHEMA public
    GRANT USAGE, SELECT ON SEQUENCES TO :"runtime";
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO :"runtime";
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO :"runtime";
