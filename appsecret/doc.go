// Package appsecret is for the applications that use the secrets rotator
// manages. It depends on the standard library, hashicorp/vault/api and
// golang-jwt/jwt/v5 only, so any Go service can import it.
//
// # Reading a secret
//
// Open reads a secret in the order operators already use, stopping at the
// first place that has it:
//
//  1. Vault KV v2, when VAULT_ADDR is set (token from VAULT_TOKEN), at
//     <VaultMount>/<VaultPath> (default secret/<Name>); the previous
//     version is the newest readable KV version before the latest. A
//     Vault error other than "not found" is returned, not skipped.
//  2. The environment variable Env (default: Name upper-cased with _,
//     api/openrouter -> API_OPENROUTER); <Env>_PREVIOUS may hold the
//     previous version.
//  3. The file File (default /run/secrets/<Name>): the rotator files
//     store's JSON document, or the secret alone (with its .meta.json
//     beside it when the store writes the raw format); <File>.previous is
//     the previous version.
//  4. Default.
//  5. ErrNotFound when Required; otherwise an empty version.
//
// A JSON document (Vault data or a file) holds the secret under its
// secret_field (password when there is none; Options.Field overrides) and
// the rotator's version, run_id, rotated_at, username and the non-secret
// fields (host, port, database, key_id...), which Version.Fields keeps.
//
// # Staying current
//
// Start re-reads the secret every Refresh (default 30s) in the background,
// so a rotated secret reaches the application without a restart, and
// calls OnChange(old, new) when the current version changed: the place to
// build a new connection pool and close the old one (see examples/pgpool).
// The rotator keeps the old credential valid for its grace period, so an
// application that refreshes well within it never sees a failure.
//
// # Accepting tokens rotator issues
//
// A service that accepts a token rotator issues (class admin_token) must
// accept the current and the previous version during the dual-key window:
// Validate compares an incoming token with both, in constant time. The
// previous version stays accepted while the store publishes it, or for
// PreviousFor after the current version was rotated when that is set
// (set it to the policy's grace plus monitor).
//
// # Key rings
//
// OpenKeyRing reads a key ring the keyring rotator publishes (a Secret
// whose value is a Ring document) and keeps it fresh the same way. SignJWT
// signs HMAC JWTs with the ring's signing key, its id in the kid header,
// and refuses a token without an expiry or one that would outlive the
// ring's max_token_lifetime; ParseJWT (or Keyfunc, with any jwt.Parser)
// verifies a token with the key its kid names, among every key of the
// ring, and refuses an unknown kid (ErrUnknownKey). A document that does
// not parse as a ring is never loaded: the ring in use stays. The same
// ring serves encryption: Ring.Signing to encrypt, Ring.Key by id to
// decrypt. KeyRing's handler reports the ring in use for the http check:
// version, fingerprint, and the signing, next and all key ids.
//
// # Telling the rotator which version is in use
//
// A *Secret is an http.Handler: mount it (for example at /secret-version)
// and list that URL in the secret's http check. It answers with the
// version number and fingerprint, in JSON and in the X-Secret-Version and
// X-Secret-Fingerprint headers; never the secret. The fingerprint is the
// one the rotator recorded when the version is one it published (so the
// http check can compare it); for any other value (env, Default, a file
// put there by hand, which people choose and an unsalted hash would let
// anyone guess) it is keyed with Options.FingerprintKey ("k-" and 16 hex
// digits of an HMAC-SHA-256), so the handler reveals nothing guessable.
//
// Version prints without its secret in every form (fmt, slog, JSON); only
// Reveal returns it.
package appsecret
