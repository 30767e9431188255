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
// custom_metadata are kept. rotator_withdrawn_run_ids lists the runs whose
// version a failed run's compensation withdrew from the secret (newest
// first, at most 10): a publish of one is refused (rotation.Withdrawn),
// since it can only be a delayed request of a process that lost its lease.
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
//
// A discarding rollback (RollbackRequest.Discard: a failed run's publish
// is put back) then soft-deletes two versions: the discarded one and the
// older copy of the version it restored. Whatever takes "the newest
// readable version before the latest" as previous (Describe, Read,
// appsecret, any KV reader) then finds the version that was previous
// before the discarded publish, and the discarded credential is not
// readable any more (an operator can undelete it). A discard whose write
// landed but whose delete did not is finished by the next discarding
// rollback of the same run.
//
// # The fence
//
// Publish with an expectation (PublishRequest.Expect: the run id the
// engine observed as current) compares it with the run id of the latest
// readable version and writes with cas on exactly that KV version: a
// different run current is refused at once (rotation.ErrStoreMoved, naming
// both run ids and the KV version found), and a writer that lands between
// the compare and the write makes Vault refuse the write (cas mismatch,
// ErrConflict; the engine's retry then compares again and refuses). A
// Rollback is fenced the same way by its run id.
// Stage and Abort do nothing: KV has no pending label.
//
// # Tokens
//
// A goroutine started by New keeps the token alive until Close, with the
// client library's api.LifetimeWatcher: it renews the token
// (auth/token/renew-self, at about two thirds of its TTL) and says when
// renewal cannot keep it any longer (not renewable, max TTL reached,
// renewal refused). An AppRole or Kubernetes store then logs in again; a
// static token is left to expire with a warning. Any request that Vault
// refuses with "invalid token" (expired, revoked) logs in again and is
// retried once. A static token that dies is reported as "vault token
// expired or revoked: ..." (Permanent); Vaults that answer a dead token
// with a bare "permission denied" are told apart by asking lookup-self.
// Close stops the renewal and revokes a token the store logged in for.
//
// # Namespaces
//
// A namespace (stores[].vault.namespace or VAULT_NAMESPACE) needs Vault
// Enterprise or HCP Vault: open-source Vault ignores the namespace header
// and would use the root namespace's mount instead. New asks sys/health
// ("enterprise", or a version ending in "+ent") and refuses the namespace
// otherwise (ErrNamespaceUnsupported, Permanent) before reading or
// writing anything.
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
//	ErrLogin             AppRole or Kubernetes login refused, or a blank role_id; Permanent
//	ErrNamespaceUnsupported  a namespace on a Vault without namespaces; Permanent
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
//	path "secret/delete/*"   { capabilities = ["update"] }
//
// plus the default policy (lookup-self, renew-self, revoke-self). The
// delete rule soft-deletes the versions a discarding rollback takes out of
// the history (see Rollback); it cannot destroy data or delete the latest
// version.
//
// # Tests
//
// The tests run against a real `vault server -dev` (internal/vaultdev:
// VAULT_BIN, `vault` on PATH, or the build of `make vault`), or against
// another Vault when VAULT_ADDR and VAULT_TOKEN are set (a root-like token;
// VAULT_TEST_MOUNT names a KV v2 mount, default "secret"; secrets are
// written under rotator-test/ and deleted afterwards). Tests that seal the
// server or need TLS (`-dev-tls`) start a dev server of their own; outages
// go through vaultdev's fault proxy.
package vault
