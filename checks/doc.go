// Package checks holds the verify-step checks beyond rotation.Delay: they
// decide whether the clients of a secret moved to its new version.
//
// # HTTP
//
// HTTP asks each listed client which version it uses: a GET of its URL
// answers with the version's fingerprint (secret.Value.Fingerprint: the
// first 12 hex digits of the secret's SHA-256, never the secret) or its
// version number, in a JSON field (JSONPath, dot-separated) or a response
// header. The appsecret package's handler answers exactly that:
//
//	{"name": "api/openrouter", "version": 7, "fingerprint": "3f9a1c0b7e22", ...}
//
// It passes when every client reports the new version. A client that
// reports another version, cannot be reached or answers with an error
// keeps it from passing, and the detail names each such client, so a held
// run says which clients stayed behind.
//
// # Last used
//
// LastUsed asks the rotator (a rotation.LastUsedReporter: the http_api
// rotator) when the old key was last used and passes once that is at least
// UnusedFor ago, or when the key was never used or no longer exists.
//
// Both are stateless between calls: the engine polls them, every
// Interval (policies.yaml's interval: 2s for http, 1m for last_used by
// default), until they pass or the grace ends, from any process. LastUsed
// asks for a sooner look (rotation.CheckResult.RecheckAt) when the key,
// left unused, passes before the next interval.
package checks
