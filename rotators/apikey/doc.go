// Package apikey rotates API keys: keys a provider issues over its HTTP
// API (Provider, policy http_api) and tokens rotator issues itself (Token,
// policy token).
//
// # Keys issued by a provider
//
// A Provider is configured with the provider's calls (policy.HTTPAPISpec:
// method, URL, headers, a JSON body template, where the answer holds what
// is read) and a management credential, read at each use (an env
// variable, a file, or the current version of another managed secret).
// The preset "openrouter" fills in OpenRouter's key provisioning API
// (POST /keys, GET /key, DELETE /keys/{hash}, GET /keys, GET /keys/{hash}).
//
//	generate  list keys (when list is configured) and revoke every key named
//	          for this secret but the current one: keys a run created and
//	          never recorded because the process died; then create a key
//	          named <name_prefix><secret id>-<run id> and call verify with
//	          it (up to 3 tries, for providers slow to accept a new key).
//	          A key that does not verify is revoked before the error returns.
//	test      verify with the key (the monitor step).
//	clients   ErrUnsupported: use the http and last_used checks.
//	retire    revoke the old key by id; a key already gone is fine.
//	restore   nothing when the old key still verifies (a rollback before
//	          retire), else the restore call, else ErrNotRestorable.
//	discard   revoke the unpublished key.
//	LastUsed  (rotation.LastUsedReporter) the last_used call: a time at
//	          last_used_path, or a usage counter at usage_path that counts
//	          as unused while it stays put (watched by this process, so the
//	          first look counts as a use: conservative).
//
// Stray keys are matched by the whole name: the prefix, the secret id, a
// dash and a run id (a UUID), so the keys of a secret "api/x-y" are never
// taken for strays of "api/x".
//
// # Secrets in calls
//
// {management} and {key} may appear only in headers and the body (the
// loader refuses them in URLs, which are logged). Errors name the call,
// method, URL and status with an excerpt of the provider's answer in which
// both are replaced by REDACTED; a create answer, which holds the new key,
// is never quoted. 400, 401, 403, 405 and 422 are Permanent.
//
// # Tokens rotator issues
//
// Token draws Prefix + Length characters of A-Z a-z 0-9 from crypto/rand
// (rejection sampling: uniform). There is no target: retire, restore and
// discard do nothing, and the services that accept a token read the
// current and previous versions from the store and accept both during the
// dual-key window (appsecret.Secret.Validate). The previous version stays
// accepted until the next rotation replaces it, unless the services bound
// it (appsecret.Options.PreviousFor).
package apikey
