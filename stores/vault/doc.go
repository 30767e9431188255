// Package vault is the rotation.Store for a HashiCorp Vault KV version 2
// mount, through github.com/hashicorp/vault/api.
//
// # Configuration
//
// Validate checks a policy.VaultSpec without contacting Vault. New builds
// the client (address from the spec or VAULT_ADDR; namespace; TLS CA file
// and server name, or the usual VAULT_CACERT...), logs in, and checks the
// mount:
//
//   - token: auth.token.token (env or file), else VAULT_TOKEN, else the
//     CLI's ~/.vault-token. Checked with auth/token/lookup-self.
//   - approle: auth/<mount>/login with role_id and secret_id (each an env
//     or a file, read again at every login).
//   - kubernetes: auth/<mount>/login with the role and the service-account
//     JWT file (default /var/run/secrets/kubernetes.io/serviceaccount/token),
//     read again at every login, so a projected token's rotation is seen.
//
// The mount is checked with sys/internal/ui/mounts/<mount>, which any
// token with a capability under the mount may read: it must be a KV mount
// with options.version "2", rooted exactly at the configured path. A KV v1
// mount is refused before anything is written, because a v1 mount would
// silently take a write to <mount>/data/<path> as a secret of that name.
//
// # What a version looks like in Vault
//
// Each rotator version is one KV version whose data is
// rotation.Version.Data: the secret under its field ("password",
// "api_key"...), username, key_id, extra fields, and the rotator's version,
// run_id, rotated_at and fingerprint. Vault keeps custom_metadata per
// secret, not per version, so the per-version record lives in the data,
// and custom_metadata (rotator_version, rotator_run_id, rotator_rotated_at,
// rotator_fingerprint, rotator_rolled_back_run_id) describes the latest
// version only, for people browsing Vault. Keys others put in
// custom_metadata are kept.
//
// # Publish
//
//  1. Read <mount>/metadata/<path> (current_version, the versions map).
//  2. If the latest version is readable and its data's run_id is the
//     run's, the run is already published: only custom_metadata is made
//     to agree (a crash between the two writes heals here). Done.
//  3. Write <mount>/data/<path> with options.cas = current_version (0 when
//     the secret does not exist: create only). If someone wrote in between,
//     Vault answers 400 "check-and-set parameter did not match the current
//     version": ErrConflict, retryable, and nothing was overwritten.
//  4. Write custom_metadata.
//
// The previous version stays readable by number, as KV v2 keeps it.
//
// # Describe and Read
//
// Current is the latest version when it is readable (a soft-deleted or
// destroyed latest version means clients see nothing, so neither do we).
// Previous is the newest readable version before the latest, skipping
// deleted, destroyed and pruned (max_versions) ones. Both come from the
// metadata's versions map and ?version=N reads.
//
// # Rollback
//
// If and only if the latest version's run_id is the run's, the previous
// readable version's data is written again as a new version, with
// check-and-set on the latest (KV history is never rewritten); its version
// field becomes RollbackRequest.Number when that is set. Otherwise nothing
// happens, so a repeated rollback is a no-op. With no previous version the
// rollback fails (wrapping rotation.ErrNotFound) and changes nothing.
// Stage and Abort do nothing: KV has no pending label.
//
// # Tokens
//
// A goroutine started by New keeps the token alive until Close: it calls
// auth/token/renew-self when half the TTL has passed. An AppRole or
// Kubernetes token is replaced by a new login when it is not renewable or
// a renewal comes back short (max TTL reached); and any request that Vault
// refuses with "invalid token" (expired, revoked) logs in again and is
// retried once. A static token that dies is reported as "vault token
// expired or revoked: ..." (Permanent); Vaults that answer a dead token
// with a bare "permission denied" are told apart by asking lookup-self.
// Close stops the renewal and revokes a token the store logged in for.
//
// # Errors
//
// Every error names the Vault address or the path (and namespace), says
// what to do, and never carries a secret or a token. errors.Is works with:
//
//	ErrSealed            503 "Vault is sealed"; retryable (unseal)
//	ErrUnreachable       no answer at the address; retryable (TLS failures: Permanent)
//	ErrMountNotFound     no such mount, or none the token may use; Permanent
//	ErrNotKVv2           KV v1 or another engine; Permanent
//	ErrPermissionDenied  "permission denied: need create/update on secret/data/x"; Permanent
//	ErrTokenInvalid      "vault token expired or revoked: ..."; Permanent
//	ErrConflict          check-and-set lost to another writer; retryable
//	ErrLogin             AppRole or Kubernetes login refused; Permanent
//
// The client's own retries are off (MaxRetries 0): the engine retries
// steps with its backoff.
//
// # Vault policy
//
// The token needs, for a mount "secret":
//
//	path "secret/data/*"     { capabilities = ["create", "read", "update"] }
//	path "secret/metadata/*" { capabilities = ["create", "read", "update"] }
//
// plus the default policy (lookup-self, renew-self, revoke-self).
//
// # Tests
//
// The tests run against internal/vaulttest, or against a real Vault when
// VAULT_ADDR and VAULT_TOKEN are set (a root-like token; VAULT_TEST_MOUNT
// names a KV v2 mount, default "secret"; secrets are written under
// rotator-test/ and deleted afterwards). Tests whose names end in
// _TestServer control the server (seal it, expire tokens, fake AppRole and
// Kubernetes) and always use the test server.
package vault
