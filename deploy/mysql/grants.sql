-- Least privileges of the account rotator's mysql rotator connects as
-- (MariaDB 10.5 or later). Create the account first, with a password of
-- your own, then run this file as an administrator:
--
--   CREATE USER 'rotator_admin'@'%' IDENTIFIED BY '...';
--   mariadb -u root < deploy/mysql/grants.sql
--
-- `rotator init` needs one more grant, for a while: see init-grants.sql.
--
-- rotators/mysql TestAdminGrants runs both files with the mariadb client,
-- init, revokes init-grants.sql, then runs two rotations, a retire with
-- terminate_sessions, a restore and a discard as that account.

-- ALTER USER (password hash, ACCOUNT LOCK/UNLOCK), and at init CREATE
-- USER and CREATE ROLE. The creator of a role holds it WITH ADMIN OPTION,
-- so init can grant it to the pair. For a role that exists already:
--   GRANT 'app' TO 'rotator_admin'@'%' WITH ADMIN OPTION;
GRANT CREATE USER ON *.* TO 'rotator_admin'@'%';

-- Which of the pair is locked and which roles it holds.
GRANT SELECT ON mysql.global_priv TO 'rotator_admin'@'%';
GRANT SELECT ON mysql.roles_mapping TO 'rotator_admin'@'%';

-- Count the old user's connections (information_schema.PROCESSLIST
-- shows other users' connections only with PROCESS).
GRANT PROCESS ON *.* TO 'rotator_admin'@'%';

-- terminate_sessions: true kills the old user's connections at retire.
-- Leave it out if you do not use terminate_sessions.
GRANT CONNECTION ADMIN ON *.* TO 'rotator_admin'@'%';

-- The fence table (fence_database, default rotator): init creates the
-- database and the table; every fenced action reads and moves its row.
GRANT CREATE, SELECT, INSERT, UPDATE ON `rotator`.* TO 'rotator_admin'@'%';
