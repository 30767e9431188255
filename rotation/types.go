package rotation

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/rotator/rotator/internal/secret"
)

// Credential is one version of a managed secret: what a Rotator produces and
// what a Store publishes. Only Secret is secret; the rest may be logged.
type Credential struct {
	// Username is the login name (Postgres role), empty where there is none.
	Username string
	// Secret is the password, API key or token.
	Secret secret.Value
	// Field is the name under which Secret is published ("password",
	// "api_key", "token"). Empty means "password".
	Field string
	// KeyID is the provider's id of an API key, empty where there is none.
	KeyID string
	// Extra holds non-secret fields published beside the secret (host,
	// port, database, ...).
	Extra map[string]string
}

// Meta returns the non-secret identity of the credential.
func (c Credential) Meta() CredentialMeta {
	return CredentialMeta{Username: c.Username, KeyID: c.KeyID}
}

// SecretField returns Field, or "password" when Field is empty.
func (c Credential) SecretField() string {
	if c.Field == "" {
		return "password"
	}
	return c.Field
}

// CredentialMeta identifies a credential without its secret: what the state
// database records about the current and previous versions.
type CredentialMeta struct {
	Username string `json:"username,omitempty"`
	KeyID    string `json:"key_id,omitempty"`
}

// IsZero reports whether m identifies nothing.
func (m CredentialMeta) IsZero() bool { return m.Username == "" && m.KeyID == "" }

// String names the credential for logs and messages.
func (m CredentialMeta) String() string {
	switch {
	case m.Username != "" && m.KeyID != "":
		return m.Username + " (key " + m.KeyID + ")"
	case m.Username != "":
		return m.Username
	case m.KeyID != "":
		return "key " + m.KeyID
	}
	return "(none)"
}

// VersionMeta describes a published version without its secret.
type VersionMeta struct {
	// Number is the rotator's version number for the secret: 1, 2, 3...
	Number int64 `json:"number"`
	// RunID is the run that produced the version.
	RunID string `json:"run_id"`
	// RotatedAt is when the run generated it.
	RotatedAt time.Time `json:"rotated_at"`
	// Fingerprint is secret.Value.Fingerprint of the secret, so clients
	// and checks can say which version they use without revealing it.
	Fingerprint string `json:"fingerprint,omitempty"`
	// Username of the credential, where it has one.
	Username string `json:"username,omitempty"`
}

// Version is a credential together with its version metadata: the unit a
// Store writes.
type Version struct {
	Number     int64
	RunID      string
	RotatedAt  time.Time
	Credential Credential
}

// Meta returns the version's metadata.
func (v Version) Meta() VersionMeta {
	return VersionMeta{
		Number:      v.Number,
		RunID:       v.RunID,
		RotatedAt:   v.RotatedAt,
		Fingerprint: v.Credential.Secret.Fingerprint(),
		Username:    v.Credential.Username,
	}
}

// Well-known keys of the flat map a store writes (see Data).
const (
	DataUsername    = "username"
	DataKeyID       = "key_id"
	DataVersion     = "version"
	DataRunID       = "run_id"
	DataRotatedAt   = "rotated_at"
	DataFingerprint = "fingerprint"
	DataField       = "secret_field"
)

// Data returns the flat key/value form stores write: the secret under its
// field name, the username, key id, extra fields and the version metadata.
// It reveals the secret: call it only to hand the data to a store.
func (v Version) Data() map[string]string {
	c := v.Credential
	d := make(map[string]string, len(c.Extra)+7)
	for k, x := range c.Extra {
		d[k] = x
	}
	d[c.SecretField()] = c.Secret.Reveal()
	if c.Field != "" && c.Field != "password" {
		d[DataField] = c.Field
	}
	if c.Username != "" {
		d[DataUsername] = c.Username
	}
	if c.KeyID != "" {
		d[DataKeyID] = c.KeyID
	}
	d[DataVersion] = strconv.FormatInt(v.Number, 10)
	d[DataRunID] = v.RunID
	d[DataRotatedAt] = v.RotatedAt.UTC().Format(time.RFC3339Nano)
	d[DataFingerprint] = c.Secret.Fingerprint()
	return d
}

// ParseData is the inverse of Data: stores call it to turn what they read
// back into a Version. Missing metadata is left zero; a missing secret
// field is an error.
func ParseData(d map[string]string) (Version, error) {
	var v Version
	field := d[DataField]
	if field == "" {
		field = "password"
	}
	s, ok := d[field]
	if !ok {
		return v, fmt.Errorf("stored data has no %q field", field)
	}
	v.Credential = Credential{Username: d[DataUsername], KeyID: d[DataKeyID], Secret: secret.New(s)}
	if field != "password" {
		v.Credential.Field = field
	}
	if n, err := strconv.ParseInt(d[DataVersion], 10, 64); err == nil {
		v.Number = n
	}
	v.RunID = d[DataRunID]
	if t, err := time.Parse(time.RFC3339Nano, d[DataRotatedAt]); err == nil {
		v.RotatedAt = t
	}
	known := map[string]bool{field: true, DataField: true, DataUsername: true, DataKeyID: true,
		DataVersion: true, DataRunID: true, DataRotatedAt: true, DataFingerprint: true}
	keys := make([]string, 0, len(d))
	for k := range d {
		if !known[k] {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		if v.Credential.Extra == nil {
			v.Credential.Extra = map[string]string{}
		}
		v.Credential.Extra[k] = d[k]
	}
	return v, nil
}

// Errors the seams return. Callers test them with errors.Is.
var (
	// ErrNotFound: the thing asked for does not exist (a store path with no
	// version, a role, a key).
	ErrNotFound = errors.New("not found")
	// ErrUnsupported: the implementation cannot do this (a target that
	// cannot report its clients, a store without staging).
	ErrUnsupported = errors.New("not supported")
	// ErrNotRestorable: the old credential cannot be made valid again.
	ErrNotRestorable = errors.New("cannot be restored")
)

// permanentError marks an error that retrying will not fix.
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Permanent wraps err so the engine's retry loop stops at once: bad
// configuration, permission denied, a missing mount. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

// IsPermanent reports whether err (or anything it wraps) was marked Permanent.
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}

// Rotator does the target-side work for one kind of credential. Every method
// is idempotent: the engine calls it again after a crash or a retry.
type Rotator interface {
	// Generate creates a new credential beside the current one at the
	// target and tests it (Postgres: re-key the standby login role and log
	// in with it). Nothing is published. Current is the credential in use,
	// zero when the engine does not know it yet (first rotation); the
	// rotator then finds out from the target.
	Generate(ctx context.Context, req GenerateRequest) (GenerateResponse, error)
	// Test checks that a credential works at the target (logs in, calls the
	// provider's verify endpoint). The monitor step calls it.
	Test(ctx context.Context, req TestRequest) error
	// Clients reports how many clients still use the old credential.
	// Returns ErrUnsupported when the target cannot tell.
	Clients(ctx context.Context, req ClientsRequest) (ClientsResponse, error)
	// Retire disables the old credential (NOLOGIN, revoke). A credential
	// that is already disabled or gone is not an error.
	Retire(ctx context.Context, req RetireRequest) error
	// Restore makes a retired credential valid again for a rollback.
	// Returns an error wrapping ErrNotRestorable when that is impossible.
	Restore(ctx context.Context, req RestoreRequest) error
	// Discard undoes Generate for a run that failed before its credential
	// was published (NOLOGIN on the standby, revoke the new key), so no
	// working credential is left that no store knows about. A credential
	// that is already gone is not an error.
	Discard(ctx context.Context, req DiscardRequest) error
}

// GenerateRequest asks for a new credential.
type GenerateRequest struct {
	SecretID string
	RunID    string
	// Current is the credential clients use now; zero on a first rotation.
	Current CredentialMeta
}

// GenerateResponse carries the new, tested credential.
type GenerateResponse struct {
	Credential Credential
	// Replaces is the credential the new one replaces, as the rotator
	// found it at the target (for a first rotation, when the engine did
	// not know it). The engine verifies and retires it.
	Replaces CredentialMeta
}

// TestRequest names the credential to test.
type TestRequest struct {
	SecretID   string
	Credential Credential
}

// ClientsRequest names the old credential whose users are counted.
type ClientsRequest struct {
	SecretID string
	Old      CredentialMeta
}

// ClientsResponse says how many clients still use the old credential.
type ClientsResponse struct {
	Count int
	// Detail describes them for people (e.g. "3 sessions from 10.0.0.7").
	Detail string
}

// RetireRequest names the credential to disable.
type RetireRequest struct {
	SecretID string
	Old      CredentialMeta
	// New is the credential that replaces it (it must stay valid).
	New CredentialMeta
	// Terminate asks the target to end sessions still open with Old.
	Terminate bool
}

// RestoreRequest names the credential to re-enable.
type RestoreRequest struct {
	SecretID string
	Old      CredentialMeta
	// Previous is the old credential with its secret when a store could
	// give it back (nil otherwise); single-role Postgres needs it.
	Previous *Credential
}

// DiscardRequest names the unpublished credential to disable.
type DiscardRequest struct {
	SecretID string
	New      CredentialMeta
	// Current is the credential clients use, which must stay valid.
	Current CredentialMeta
	// Previous is the current credential with its secret when a store
	// could give it back (nil otherwise); single-role Postgres needs it.
	Previous *Credential
}

// Store holds the versions of a secret at one place (a Vault KV v2 path, an
// AWS secret, a file). Every method is idempotent per run id.
type Store interface {
	// Stage records v as pending without making it current (AWS:
	// AWSPENDING). Stores without staging return nil and do nothing.
	Stage(ctx context.Context, req StageRequest) error
	// Publish makes v current and keeps the version that was current
	// readable as the previous one. If the current version already has
	// v.RunID it does nothing (a retried publish adds no version).
	Publish(ctx context.Context, req PublishRequest) error
	// Describe returns the metadata of the current and previous versions.
	// A path with nothing published returns a zero response, no error.
	Describe(ctx context.Context, req DescribeRequest) (DescribeResponse, error)
	// Read returns the current (or previous) version with its secret.
	// Returns ErrNotFound when there is none.
	Read(ctx context.Context, req ReadRequest) (Version, error)
	// Rollback makes the previous version current again, if and only if
	// the current version is the one RunID published; otherwise (already
	// rolled back, or never published) it does nothing.
	Rollback(ctx context.Context, req RollbackRequest) error
	// Abort removes a version RunID staged and never published. No-op when
	// there is none.
	Abort(ctx context.Context, req AbortRequest) error
}

// StageRequest stages a version at Path.
type StageRequest struct {
	Path    string
	Version Version
}

// PublishRequest publishes a version at Path.
type PublishRequest struct {
	Path    string
	Version Version
}

// DescribeRequest asks for the versions at Path.
type DescribeRequest struct {
	Path string
}

// DescribeResponse holds the metadata of the current and previous versions
// (nil where there is none).
type DescribeResponse struct {
	Current  *VersionMeta
	Previous *VersionMeta
	// Pending is a staged version not yet current, where the store stages.
	Pending *VersionMeta
}

// Which selects a version to read.
type Which int

// The versions Read can return.
const (
	Current Which = iota
	Previous
)

// ReadRequest asks for one version at Path.
type ReadRequest struct {
	Path  string
	Which Which
}

// RollbackRequest undoes the version RunID published at Path.
type RollbackRequest struct {
	Path  string
	RunID string
	// Number is the version number the rollback itself gets where a store
	// writes rollbacks as new versions (Vault); zero lets the store choose.
	Number int64
}

// AbortRequest removes the version RunID staged at Path.
type AbortRequest struct {
	Path  string
	RunID string
}

// Check decides whether clients have moved to the new version.
type Check interface {
	// Name identifies the check in logs and history ("delay 5m",
	// "http https://app/version").
	Name() string
	// Check reports whether the check passes now.
	Check(ctx context.Context, req CheckRequest) (CheckResult, error)
}

// CheckRequest describes the versions a check compares.
type CheckRequest struct {
	SecretID    string
	New         VersionMeta
	Old         CredentialMeta
	PublishedAt time.Time
	Now         time.Time
}

// CheckResult is one check's answer.
type CheckResult struct {
	Passed bool
	// Detail says why not, for people ("2 sessions still use app_blue").
	Detail string
}
