-- rotator's own state database and its role (DATABASE_URL): the role owns
-- that database and nothing else, so `rotator migrate` can create its
-- tables there. Run as a superuser (or a CREATEROLE + CREATEDB role):
--
--   psql "postgres://master@db:5432/postgres" -v ON_ERROR_STOP=1 \
--        -v state_role=rotator -v state_db=rotator -f deploy/postgres/state.sql
--   psql ... -c '\password rotator'
--
-- The state holds no plaintext secret (in-flight credentials are sealed
-- with the state key), but it is the journal rotations resume from: back
-- it up (docs/runbook.md, "Restoring the state database").

\set ON_ERROR_STOP on

CREATE ROLE :"state_role" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
CREATE DATABASE :"state_db" OWNER :"state_role";
REVOKE ALL ON DATABASE :"state_db" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE :"state_db" TO :"state_role";
