// Package redis rotates the password of a Redis ACL user (Redis 6+).
//
// # The dual key
//
// Redis keeps several passwords per user, so old and new are two passwords
// of one user, told apart by their key id: "sha256:" and the first 16 hex
// digits of the password's SHA-256 (KeyID). Passwords reach Redis only as
// that hash: ACL SETUSER <user> #<sha256> adds one, !<sha256> removes one;
// no command rotator sends holds a plaintext password.
//
//	generate  ACL GETUSER; refuse a missing or nopass user. The current
//	          password is the engine's (by key id), or on a first rotation
//	          the user's one password (several: refuse, rotator would
//	          guess). Add a new password by its hash, log in with it (a new
//	          connection: AUTH, PING; NOPERM after AUTH counts as logged in).
//	          A retry of the same run removes the password its first try
//	          added (recorded on the marker as pending_run/pending_key).
//	test      log in with the credential on a new connection.
//	clients   ErrUnsupported: Redis cannot say which password a connection
//	          used (CLIENT LIST names the user only); use delay and http.
//	retire    remove the old password by its hash; refuse when the new one
//	          is not on the user; an old one already gone is done.
//	          Terminate is ignored: CLIENT KILL USER would end the new
//	          password's connections too.
//	restore   nothing while the old password is on the user; else re-add
//	          it by its hash when the request carries it (a store still
//	          held it) and log in with it; else ErrNotRestorable.
//	discard   remove the unpublished password by its hash; with no new
//	          key id (generate failed before naming it), the password
//	          the marker records as this run's pending one, if any.
//
// # Shared admin clients
//
// A Rotator built with WithPools takes its admin client from Pools, one
// per admin URL (address, credentials, database, TLS; keyed by the URL's
// SHA-256, never the URL), whose pool holds at most SharedPoolSize
// connections (pool_size in the URL sets another), shared by every user
// of the server. Its Close leaves the client open; Pools.Close closes
// it. A URL replaced by another of the same server, user and database
// (the admin password changed) is superseded: its client closes with the
// last rotator built on it, not with Pools. The admin connections keep no per-secret state: the client
// authenticates each connection once with the URL's credentials, and the
// rotator sends no AUTH, SELECT, CLIENT SETNAME or other session command
// after that; the fence's WATCH holds one connection for its transaction
// and is ended by EXEC or UNWATCH before the connection goes back
// (go-redis Client.Watch). Login tests (test, generate, restore) are a
// new client and connection each, as the credential's user. A rotator
// given WithHook (tests) keeps a client of its own.
//
// # The fence
//
// Every ACL SETUSER runs in MULTI/EXEC under WATCH on the user's marker
// hash rotator:fence:<user> (field token: the lease token of the last
// change; run; action). Inside WATCH the rotator reads the token and
// refuses (ErrFenced, permanent) when it is newer than its own; otherwise
// the transaction queues the ACL change and the marker's new token. Redis
// runs EXEC only when nobody wrote the marker since WATCH, so a process
// that lost its lease is refused at the target even when its transaction
// was delayed in flight after it read the marker. A zero token (no lease)
// neither checks nor moves the marker. Lua cannot be used: ACL is not
// allowed in scripts.
//
// Limits: the marker is a key, so FLUSHALL/FLUSHDB or a restore of an old
// RDB resets it (the next holder writes it again; until then a stale
// process's token is not refused by Redis but by the engine's lease
// checks). Redis does not replicate ACL changes: each server (or cluster
// node) is its own secret.
package redis
