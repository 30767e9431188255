// Package postgres rotates the password of a PostgreSQL role without
// breaking the applications that use it. It implements rotation.Rotator in
// two modes: blue/green (the default, no outage) and single-role (for those
// who cannot change their schema, with a short window of failures).
//
// New builds a Rotator from a policy.PostgresSpec and the admin DSN;
// Validate checks a spec without I/O, so a bad configuration fails when the
// policies file is loaded. The admin connection pool is opened on first use
// and released by Close.
//
// # Blue/green roles
//
// PostgreSQL allows one password per role, so the period in which both the
// old and the new credential work needs two login roles. The role named in
// the policy (say app) becomes the group: it holds the privileges and owns
// the objects. app_blue and app_green are inheriting members of it, and
// each sets "role = app" at login, so whatever they create is owned by app
// and either can take over from the other.
//
// Init (rotator init) makes the pair from an existing role, checking before
// each step so that running it again does nothing new: it creates
// app_blue/app_green NOLOGIN where missing, grants app to each (INHERIT),
// runs ALTER ROLE ... SET role TO 'app', and REASSIGN OWNED BY each TO app
// in the connected database when they own anything there (REASSIGN OWNED
// works one database at a time: run init against each database where the
// members own objects). Init leaves app's LOGIN and password alone: clients
// keep using app until the first rotation retires it.
//
// # The state machine
//
// One role can log in besides the standby being prepared. A rotation moves
// from the current role to the standby, which is the other member of the
// pair (the first standby of app is app_blue):
//
//	after init        app LOGIN          app_blue NOLOGIN   app_green NOLOGIN
//	generate          app LOGIN          app_blue LOGIN*    app_green NOLOGIN   (* new password, tested)
//	publish, verify   both work; Clients counts sessions of app in pg_stat_activity
//	retire            app NOLOGIN        app_blue LOGIN     app_green NOLOGIN   (sessions ended if asked)
//	next rotation     app_blue -> app_green, then app_green -> app_blue, ...
//	rollback          Restore: the old role LOGIN again; it kept its password while NOLOGIN
//	failed run        Discard: the unpublished standby NOLOGIN again
//
// NOLOGIN refuses new connections only: open sessions of a retired role keep
// working until they end, or until Retire with Terminate ends them
// (pg_terminate_backend).
//
// Generate re-keys the standby with ALTER ROLE ... WITH LOGIN PASSWORD and
// logs in as it (same host, port, database and TLS settings as the admin
// DSN) before returning. That login proves the password only when the
// server checks it there: an admin DSN over a Unix socket with peer or
// trust authentication in pg_hba.conf would let any password in. Calling it again re-keys the same standby again.
// Retire, Restore and Discard check the role first and do nothing when it
// is already in the wanted state; Retire of a role that no longer exists
// is not an error, Restore of one is ErrNotRestorable. Retire refuses to
// disable the new credential, and Retire, Restore and Discard refuse roles
// outside the pair (permanent errors), so a bad request cannot lock out
// another role.
//
// # Finding the current role
//
// The engine passes the current credential (GenerateRequest.Current) once it
// has recorded one. On a first rotation it does not know it, and Generate
// reads the roles: if exactly one of app_blue/app_green can log in, it is
// current; if neither can, app is; if both can, Generate stops with a
// permanent error asking a person to disable the one clients do not use
// (pg_stat_activity tells which), because re-keying the wrong one would
// break clients. A first-rotation retry after app_blue was re-keyed sees
// app_blue as current and re-keys app_green; the rotation after it repairs
// the pair.
//
// # Single-role mode, and its window of failures
//
// In single_role mode the role is the login role and the new password is
// set on it directly. THE OLD PASSWORD STOPS WORKING AT ONCE: a client that
// opens a connection between the re-key and the moment it reads the
// published new password fails to log in. Sessions already open are not
// affected. Use it only where blue/green roles are impossible, with clients
// that retry their connections. To keep that window short, Generate
// honours rotation.GenerateRequest.Prepare: the engine draws the password,
// stages it in the stores, and only then sets it (Generate with Apply) and
// publishes at once; a failure of that re-key is a failed generate, and
// the engine's compensation sets the published (old) password back. Clients returns rotation.ErrUnsupported (sessions of the
// old and the new password look the same), Retire does nothing (Generate
// already retired the old password), and Restore and Discard set the
// previous password back when the engine can give it (from a store),
// otherwise they return an error wrapping rotation.ErrNotRestorable. Init
// is for blue/green only.
//
// # Passwords
//
// Passwords are drawn with crypto/rand (WithRand injects another source for
// tests) from the policy's alphabet, by rejection sampling: a random byte b
// is used only when b < 256 - 256 % len(alphabet), so every character is
// equally likely. PostgreSQL receives only the SCRAM-SHA-256 verifier,
// computed here exactly as PostgreSQL computes it (16-byte random salt,
// 4096 iterations):
//
//	ALTER ROLE app_blue WITH LOGIN PASSWORD 'SCRAM-SHA-256$4096:<salt>$<StoredKey>:<ServerKey>'
//
// so the plaintext never reaches the server's log (log_statement = 'all'),
// pg_stat_statements or pg_stat_activity. The test login authenticates the
// way pg_hba.conf asks (SCRAM sends a proof, not the password; under the
// "password" method use TLS). No error or log line holds a password or the
// admin DSN; logs carry the password's fingerprint.
//
// # Privileges of the admin role
//
// The admin DSN may name a superuser, but need not. Measured on PostgreSQL
// 15 (TestNonSuperuserAdmin runs init, three rotations, terminate, restore
// and discard as such a role), a role with
//
//	CREATE ROLE rotator_admin LOGIN CREATEROLE PASSWORD '...';
//	GRANT pg_signal_backend TO rotator_admin;   -- only for terminate_sessions: true
//
// is enough for everything except one step of init: REASSIGN OWNED, which
// runs only when app_blue or app_green already own objects, needs
// membership in both the member and the group (GRANT app, app_blue TO
// rotator_admin; TestInitReassignNeedsMembership). Optional:
// pg_read_all_stats lets Clients name the addresses of sessions (without
// it, sessions are counted but reported from "unknown address").
//
// On PostgreSQL 16 and later CREATEROLE alone no longer lets a role alter
// roles it did not create: the admin role also needs ADMIN OPTION on app,
// app_blue and app_green (GRANT app TO rotator_admin WITH ADMIN OPTION, ...;
// roles the admin creates itself, as init does, come with it). This follows
// the PostgreSQL 16 release notes and is not measured by the tests, which
// run the server installed on the machine (15 today). Superuser
// roles cannot be managed by a CREATEROLE role at all, and init refuses
// to manage them.
//
// # The fence
//
// Re-key, retire, restore and discard each reach the server as ONE
// statement, a DO block that takes pg_advisory_xact_lock on the secret's
// role name, reads the rotator's marker on the secret's roles (the role's
// comment, shobj_description(oid, 'pg_authid'); app_blue and app_green in
// blue/green, the role itself in single-role mode), raises SQLSTATE RTF01
// when a marker names a newer lease token than the request's
// (rotation.Fence), and otherwise runs the ALTER ROLE (a password only as a
// SCRAM verifier) and moves the markers to "rotator:<token>:<run id>:<action>"
// in the same transaction. RTF01 is returned as rotation.ErrFenced
// (permanent): a delayed or replayed statement of a process that lost its
// lease is refused by the server and changes nothing. A request without a
// token (a caller without a lease) is sent unfenced. A role comment that
// is not a rotator marker is replaced. The statement needs nothing beyond
// the admin privileges below: COMMENT ON ROLE is allowed to a CREATEROLE
// role on the roles it may alter, DO (plpgsql) and advisory locks to PUBLIC.
//
// # Errors
//
// Errors say which role and step failed. Permission denied (SQLSTATE 42501)
// and missing roles are rotation.Permanent, with what to grant or to run.
// A refused admin login names the admin_dsn reference, host and user to
// check, never the DSN itself.
package postgres
