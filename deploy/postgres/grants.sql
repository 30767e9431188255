-- The admin role rotator's Postgres rotator connects as (admin_dsn in
-- policies.yaml): not a superuser, only what rotations and `rotator init`
-- need. Run it as a superuser (or, on RDS / Cloud SQL, the master user),
-- connected to the application's database:
--
--   psql "postgres://master@db:5432/app" -v ON_ERROR_STOP=1 \
--        -v admin_role=rotator_admin -v app_role=app \
--        [-v terminate_sessions=1] -f deploy/postgres/grants.sql
--   psql ... -c '\password rotator_admin'    # the password, SCRAM-hashed by psql
--
-- What each grant is for:
--   LOGIN CREATEROLE   ALTER ROLE ... PASSWORD / LOGIN / NOLOGIN on app,
--                      app_blue, app_green; CREATE ROLE app_blue/app_green
--                      and GRANT app TO them (rotator init)
--                      and COMMENT ON ROLE on app_blue/app_green (the
--                      rotator's fence marker, see docs/decisions.md
--                      "Fencing target actions"); the fenced statement is a
--                      DO block (plpgsql, usable by PUBLIC by default) that
--                      takes pg_advisory_xact_lock (PUBLIC too)
--   CONNECT            the admin DSN's database
--   pg_signal_backend  only with terminate_sessions: true, to end the old
--                      role's sessions at retire
--   ADMIN OPTION       PostgreSQL 16+ only: a CREATEROLE role may alter only
--                      roles it has ADMIN OPTION on; INHERIT FALSE and SET
--                      FALSE keep the admin from using the app role's
--                      privileges (table data)
--
-- Nothing else: no SUPERUSER, CREATEDB, REPLICATION or BYPASSRLS, no
-- membership in the application's role on PostgreSQL 15 and older, no
-- privilege on any table. pg_stat_activity shows every session's user
-- name without further grants (that is all the verify step counts).
-- deploy/postgres_test.go runs `rotator init` and two rotations as a role
-- made by this file and nothing more.

\set ON_ERROR_STOP on

CREATE ROLE :"admin_role" LOGIN CREATEROLE NOSUPERUSER NOCREATEDB NOREPLICATION NOBYPASSRLS;

SELECT current_database() AS admin_database \gset
GRANT CONNECT ON DATABASE :"admin_database" TO :"admin_role";

\if :{?terminate_sessions}
GRANT pg_signal_backend TO :"admin_role";
\endif

SELECT current_setting('server_version_num')::int >= 160000 AS pg16 \gset
\if :pg16
-- The blue/green roles the admin creates itself come with ADMIN OPTION;
-- the existing application role needs it granted.
GRANT :"app_role" TO :"admin_role" WITH ADMIN OPTION, INHERIT FALSE, SET FALSE;
\endif
