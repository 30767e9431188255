// Package keyring rotates key rings: random keys that sign tokens (HMAC
// JWTs) or encrypt data, which rotator generates itself and publishes
// together, as one JSON document (appsecret.Ring), to the stores the
// applications read with appsecret.KeyRing. No target holds the keys but
// the stores.
//
// # The ring
//
// A ring holds the signing key, the keys still accepted, and the key
// about to become signing (next). A reader signs with the signing key
// (its id in the token's kid header) and verifies a token with whichever
// key of the ring its kid names. Each key is Size random bytes from
// crypto/rand; its id is "k" and 16 random hex digits.
//
// # One publish per rotation: the next key is announced a rotation ahead
//
// For keys that sign, the dual-key process is: a new key enters the ring
// as accepted only; every client loads it; only then does it sign; and a
// key that stopped signing leaves the ring only once every token it signed
// has expired (max_token_lifetime). The engine publishes once per run, so
// the promotion is pipelined: the ring a run publishes makes the previous
// ring's next key signing and announces a fresh next key.
//
//	ring n    = { ..., S(n-1) accepted, S(n) signing, S(n+1) next }
//	ring n+1  = { ..., S(n) accepted,   S(n+1) signing, S(n+2) next }
//
//	generate  read the published ring (rotation.Successor: the engine
//	          passes it in GenerateRequest.Published) and make its
//	          successor (Successor): the next key signs, the signing key
//	          is accepted, a key accepted without an end gets one (now +
//	          max_token_lifetime: it stopped signing everywhere before this
//	          run began, because the run that demoted it verified that every
//	          client loaded that ring), a key whose end has passed leaves,
//	          and a fresh next key is drawn. No ring published: a first ring
//	          of a signing and a next key. A published credential that is
//	          not a ring is refused (permanent): starting afresh would drop
//	          the keys clients verify with. The ring is tested (Test).
//	publish   the engine's: every store makes the new ring current.
//	verify    the checks: an http check of each client's appsecret.KeyRing
//	          handler (it reports the version and fingerprint of the ring
//	          in use, and its key ids), or a delay longer than the clients'
//	          refresh; the policy requires one and on_timeout: hold.
//	          Clients returns ErrUnsupported.
//	retire    nothing to disable: the old ring's keys are all in the new
//	          one. Refuses to retire the new ring's own signing key.
//	monitor   Test of the new ring.
//	restore   nothing: rolling the stores back restores a ring, and the
//	          rolled-back ring accepts the newer ring's signing key (it was
//	          its next key); the next run promotes that key again.
//	discard   nothing: an unpublished ring is used nowhere.
//
// # Why every published ring works at every instant
//
// Two rings a client may hold at once are consecutive ones (n and n+1):
// verify lets run n+1 start only after every client loaded ring n. Ring
// n+1 holds S(n) (ring n's signing key) and ring n holds S(n+1) (its next
// key), so each verifies what the other signs. A key leaves only at a
// generate after its end, which is max_token_lifetime after a moment at
// which no client signed with it any more. A run that fails before its
// ring is published everywhere is compensated by the engine (stores rolled
// back): the rolled-back ring accepts the failed ring's signing key, and
// the failed ring's next key never signed. A crash anywhere resumes: the
// new ring is sealed in the run, publish is idempotent per run id, and a
// generate done again reads the same published ring.
//
// # Size
//
// The ring is one secret value, and stores bound its size (AWS Secrets
// Manager 65,536 bytes, Vault 1 MiB for one JSON string by default;
// policy.ValueLimit). The policy refuses settings whose ring can outgrow
// the smallest limit among the secret's stores (policy keyringSize);
// Generate refuses a ring that would not fit (WithValueLimit), permanent,
// before anything is published: runs by hand faster than the schedule
// the policy was checked with. The published ring stays in use, and a
// later run fits once older keys have expired.
//
// # Encryption keys
//
// The same ring serves encryption: encrypt with the signing key, record
// its id beside the ciphertext, decrypt with the key of that id. Then
// max_token_lifetime is how long a ciphertext lives before it is
// re-encrypted: a key leaves the ring that long after it stopped
// encrypting.
package keyring
