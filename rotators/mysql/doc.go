// Package mysql rotates the password of a MariaDB user without breaking
// the applications that use it: blue/green users that share the
// privileges of one role. It implements rotation.Rotator; New builds a
// Rotator from a policy.MySQLSpec and the admin DSN (a go-sql-driver DSN),
// Validate checks a spec without I/O. Tested on MariaDB 10.11; it needs
// MariaDB 10.4.2 or later (mysql.global_priv, ACCOUNT LOCK). MySQL 8 keeps
// its accounts in mysql.user and is not supported yet.
//
// # The server check
//
// The first use of the admin pool (Init, or any step) sends
// SELECT VERSION(), @@version_comment before anything else, once per
// pool (a shared pool: once for all its secrets). A server that is not MariaDB, or a MariaDB older than 10.4.2, is
// refused with a permanent error that names it by address (never the
// DSN), says what it reported and what is supported; a check that fails
// otherwise (the server is down) runs again on the next use.
//
// # Shared admin pools
//
// A Rotator built with WithPools takes its admin *sql.DB from Pools, one
// per admin DSN (keyed by the DSN's SHA-256, never the DSN), at most
// SharedMaxConns connections, shared by every secret of the server and
// kept across the rotators the daemon builds per check and per tick; the
// server check runs once per pool. Without WithPools a rotator has a
// pool of its own (3 connections), closed by Close. Login tests of a
// credential never use the pool: each is a fresh connection as that
// user, which is what proves the login.
//
// A pooled session serves the next caller as it is (the driver does not
// reset it), so the rotator leaves no session state on an admin
// connection: it sets no session variable, user variable, role or
// temporary table; its only session state is the fence's named lock
// (GET_LOCK, below), taken on a dedicated *sql.Conn for the duration of
// one fenced action and released on it. The connection returns to the
// pool only when RELEASE_LOCK answers 1; an error, NULL or 0, no answer
// within 5 s (or a GET_LOCK whose answer was lost) closes the session
// instead, and the server frees its locks with it. Transactions are committed or rolled
// back on that same connection before it goes back.
//
// # Blue/green users
//
// A MariaDB account has one password, so the period in which the old and
// the new credential both work needs two accounts. The role named in the
// policy (say app) holds the application's privileges; app_blue@host and
// app_green@host (host: the policy's host pattern, default %) are granted
// the role and have it as their default role, so either logs in with the
// same privileges.
//
// Init (rotator init) creates what is missing and checks before each
// step, so running it again changes nothing: the fence database and
// table, the role, the two users (ACCOUNT LOCK, with a random password
// nobody keeps), GRANT app TO each, SET DEFAULT ROLE app FOR each. The
// application's privileges are granted to the role by hand.
//
// # The state machine
//
//	after init        app_blue LOCKED    app_green LOCKED
//	generate          app_blue UNLOCKED* app_green LOCKED     (* new password, tested)
//	publish, verify   Clients counts app_green's connections in information_schema.PROCESSLIST
//	retire            the old user ACCOUNT LOCK (connections killed if asked)
//	next rotation     app_blue -> app_green, then app_green -> app_blue, ...
//	rollback          Restore: the old user ACCOUNT UNLOCK; it kept its password while locked
//	failed run        Discard: the unpublished standby ACCOUNT LOCK again
//
// The first rotation replaces nothing (both users are locked after init):
// clients move to the published app_blue as they pick it up; an account
// they used before is not touched. ACCOUNT LOCK refuses new connections
// only (MariaDB error 4151); open connections keep working until they end
// or Retire with Terminate kills them.
//
// Without a known current user (a first rotation, or a state database
// that lost it), the current user is the unlocked one; both unlocked is
// refused (permanent: a person decides). A standby that is unlocked and
// has connections is in use and is not re-keyed (ErrStandbyInUse).
//
// # Passwords
//
// The password never reaches the server: Generate sends
// ALTER USER ... IDENTIFIED BY PASSWORD '*<hash>' ACCOUNT UNLOCK, where the
// hash is mysql_native_password's, '*' and the upper-case hex of
// SHA1(SHA1(password)), computed here (NativeHash). The server's general
// log holds the hash (what mysql.global_priv stores anyway), never the
// password: TestNoPlaintextReachesServer. Logins use the native
// password handshake, which does not send the password either.
//
// # The fence
//
// Every action that changes an account (re-key, lock, unlock) carries the
// lease token (rotation.Fence) to the server. ALTER USER cannot run in a
// transaction: MariaDB commits implicitly before it. So the check and the
// change are held together by a named lock, which belongs to the session
// and survives commits:
//
//  1. SELECT GET_LOCK('rotator_fence_<hash of role@host>', 30): the
//     secret's fenced actions run one at a time, from any process;
//  2. in one transaction, SELECT the secret's row of
//     <fence_database>.rotator_fence FOR UPDATE; refuse (ErrFenced,
//     permanent, nothing changed) when its token is above ours; else
//     UPDATE it to our token, run id and action; COMMIT;
//  3. ALTER USER, on the same session, still under the lock;
//  4. RELEASE_LOCK; the session goes back to the pool only when the
//     server confirms it, else it is closed (see Shared admin pools).
//
// A newer holder cannot act between 2 and 3 (it waits at 1, then finds
// our token or a newer one); a late statement of a process that lost its
// lease is checked at 2 against the newer token. A session that dies
// loses its lock and never sends 3. Moving the marker before the change
// means a crash between 2 and 3 leaves a marker ahead of the accounts,
// which fences only older tokens. A zero token (a caller without a lease)
// sends the ALTER USER alone.
//
// # Privileges
//
// deploy/mysql/grants.sql: CREATE USER on *.*, SELECT on mysql.global_priv
// and mysql.roles_mapping, PROCESS, CONNECTION ADMIN (terminate_sessions
// only; with it a login test's connection that lingers in PROCESSLIST is
// ended, without it left to the server: TestLingeringLogin), CREATE,
// SELECT, INSERT, UPDATE on the fence database; and, for
// init only, UPDATE on mysql.* (SET DEFAULT ROLE for another user:
// deploy/mysql/init-grants.sql). TestAdminGrants runs with exactly these.
package mysql
