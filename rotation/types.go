package rotation

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/rotator/rotator/internal/secret"
	"github.com/rotator/rotator/notify"
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
	// Derived holds the derived fields that contain the secret (a DSN
	// with the password in it): secret like Secret, published beside it
	// and listed under DataSecretFields so that readers know them. A
	// derived field without the secret is in Extra. See DeriveFields.
	Derived map[string]secret.Value
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
	// KeyID of the credential, where it has one: it tells apart two
	// credentials of one username (a Redis user's passwords).
	KeyID string `json:"key_id,omitempty"`
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
		KeyID:       v.Credential.KeyID,
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
	// DataSecretFields lists, comma-separated and sorted, the derived
	// fields that hold the secret (Credential.Derived).
	DataSecretFields = "secret_fields"
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
	if len(c.Derived) > 0 {
		names := make([]string, 0, len(c.Derived))
		for k, x := range c.Derived {
			d[k] = x.Reveal()
			names = append(names, k)
		}
		sort.Strings(names)
		d[DataSecretFields] = strings.Join(names, ",")
	}
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
		DataVersion: true, DataRunID: true, DataRotatedAt: true, DataFingerprint: true, DataSecretFields: true}
	if sf := d[DataSecretFields]; sf != "" {
		for _, k := range strings.Split(sf, ",") {
			x, ok := d[k]
			if !ok || known[k] {
				return v, fmt.Errorf("stored data lists %q among its secret fields but has no such field", k)
			}
			if v.Credential.Derived == nil {
				v.Credential.Derived = map[string]secret.Value{}
			}
			v.Credential.Derived[k] = secret.New(x)
			known[k] = true
		}
	}
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
	// ErrFenced: the target refused the action because a newer lease
	// holder has acted on it since (Fence). Return it wrapped in Permanent;
	// the engine stops the run where it is, without compensating.
	ErrFenced = errors.New("refused by the target's fence: a newer lease holder has acted")
)

// ErrStoreMoved: a store refused a write because what it publishes as
// current is not what the engine observed before it decided to act
// (PublishRequest.Expect): another process has published or rolled back
// since. It is a kind of ErrFenced (errors.Is matches both). At publish,
// the engine fails the run and compensates when it still holds its lease
// (a person or a tool moved the store); a process that lost its lease is
// stopped by the fenced write that begins the compensation. Stores return
// it as a *StoreMovedError wrapped in Permanent (see StoreMoved).
var ErrStoreMoved = fmt.Errorf("the store moved since it was observed (%w)", ErrFenced)

// StoreMovedError says which store refused and what it found instead of
// what was expected: run ids and store-native version ids, never a secret.
type StoreMovedError struct {
	// Store names the store and path ("vault secret/data/apps/db",
	// "files /srv/secrets/db.json", "awssm secret \"app/db\"").
	Store string
	// Expected is the run id the caller observed as current ("" =
	// nothing published); Found is the one the store holds now.
	Expected, Found string
	// Native is the store's own id of what it found (a KV version, an AWS
	// VersionId), where it has one.
	Native string
}

func (e *StoreMovedError) Error() string {
	s := fmt.Sprintf("%s: refused: expected %s to be current, found %s", e.Store, runName(e.Expected), runName(e.Found))
	if e.Native != "" {
		s += " (" + e.Native + ")"
	}
	return s + ": changed since it was observed (by another process, or by hand): a process that lost its lease stops; one that still holds it puts the stores back"
}

// Unwrap makes errors.Is(err, ErrStoreMoved) and errors.Is(err, ErrFenced)
// hold.
func (e *StoreMovedError) Unwrap() error { return ErrStoreMoved }

func runName(id string) string {
	if id == "" {
		return "nothing published (or a version without a run id)"
	}
	return "the version of run " + id
}

// StoreMoved returns the refusal a store gives when its current version is
// not the one Expect names: a permanent *StoreMovedError.
func StoreMoved(store, expected, found, native string) error {
	return Permanent(&StoreMovedError{Store: store, Expected: expected, Found: found, Native: native})
}

// Withdrawn returns the refusal a store gives to a publish of a run whose
// version a discarding rollback withdrew from it before (the run failed
// and was compensated; a publish of it can only be a delayed request of a
// process that lost its lease): permanent, a kind of ErrStoreMoved (and
// so of ErrFenced), ids only.
func Withdrawn(store, runID string) error {
	return Permanent(fmt.Errorf("%s: refused: %s was withdrawn here (its run failed and was put back); "+
		"a publish of it can only come from a process that lost its lease: %w", store, runName(runID), ErrStoreMoved))
}

// ErrPreviousMoved: a store refused a rollback because the version it
// would make current is not the one RollbackRequest.Expect names (its
// previous version was moved, deleted or replaced since, by hand or by
// another tool). Nothing was changed; a person decides what is current.
// It is not ErrFenced: the caller keeps its lease and records the refusal
// (compensation: needs_attention, the new credential stays valid).
var ErrPreviousMoved = errors.New("the store's previous version is not the one to restore")

// PreviousMoved returns the refusal a store gives when its previous version
// is not the one RollbackRequest.Expect names: permanent, ids only.
func PreviousMoved(store, expected, found, native string) error {
	s := fmt.Sprintf("%s: rollback refused: previous is %s", store, runName(found))
	if native != "" {
		s += " (" + native + ")"
	}
	return Permanent(fmt.Errorf("%s, not %s, which was current before: changed since (by hand?); nothing was rolled back there; "+
		"put the store back by hand, or run `rotator adopt` (%w)", s, runName(expected), ErrPreviousMoved))
}

// Expect is what the engine observed at one publication before it decided
// to act: the version that must still be current when the write lands. A
// store compares it with what it holds and refuses (StoreMoved) when they
// differ, atomically with the write: Vault compares the run id of the
// latest KV version and writes with cas on that version; AWS compares the
// AWSCURRENT version and moves the label with RemoveFromVersionId set to
// it; the files store compares under an exclusive flock held across read,
// compare and write.
type Expect struct {
	// RunID of the version that must be current; "" means nothing may be
	// published (or only a version without a run id, put there by hand).
	RunID string
}

// Fence is the precondition a destructive action carries to the target: the
// lease token of the process that sends it. A target that can check it
// atomically refuses (ErrFenced) an action whose token is below the highest
// one it has seen for the secret, and records the token with the change, so
// a delayed or replayed action of a process that lost its lease changes
// nothing. A zero Token means unfenced (a caller without a lease).
type Fence struct {
	Token int64
	RunID string
}

// Permanent wraps err so the engine's retry loop stops at once: bad
// configuration, permission denied, a missing mount. Permanent(nil) is nil.
// It is the module's one marker (notify.Permanent): a sink's permanent
// error and a store's are the same thing.
func Permanent(err error) error { return notify.Permanent(err) }

// IsPermanent reports whether err (or anything it wraps) was marked
// Permanent, here or with notify.Permanent.
func IsPermanent(err error) bool { return notify.IsPermanent(err) }

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
	// Fence is checked where the action lands (see Fence).
	Fence Fence
	// Prepare asks a rotator that changes the live credential in place
	// (single-role Postgres: one role, one password) to make the new
	// credential without setting it at the target, and to say so
	// (GenerateResponse.Unapplied): the engine stages it in the stores
	// first, then calls Generate again with Apply, then publishes at once,
	// so the window in which the target has the new credential and the
	// stores still publish the old one covers only the re-key and the
	// publish. Rotators that create the credential beside the live one
	// ignore it.
	Prepare bool
	// Apply is a credential an earlier Generate prepared (Unapplied): set
	// it at the target and test it; calling it again sets it again.
	Apply *Credential
	// Published is, for a Successor only, the credential every store
	// publishes as current, with its secret (nil on a first rotation, when
	// no store publishes anything). Other rotators get nil.
	Published *Credential
}

// GenerateResponse carries the new, tested credential.
type GenerateResponse struct {
	// Unapplied: the credential was prepared (GenerateRequest.Prepare) and
	// is not yet set at the target; it is untested.
	Unapplied  bool
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
	// Fence is checked where the action lands (see Fence).
	Fence Fence
}

// RestoreRequest names the credential to re-enable.
type RestoreRequest struct {
	SecretID string
	Old      CredentialMeta
	// Previous is the old credential with its secret when a store could
	// give it back (nil otherwise); single-role Postgres needs it.
	Previous *Credential
	// Fence is checked where the action lands (see Fence).
	Fence Fence
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
	// Fence is checked where the action lands (see Fence).
	Fence Fence
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
	// rolled back, or never published) it does nothing. RunID is the
	// rollback's fence: the store checks it atomically with the write
	// (Vault cas, AWS RemoveFromVersionId, files flock), so a rollback
	// never undoes a version another process published meanwhile.
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
	// Expect, when not nil, is the version the caller observed as current
	// before deciding to publish: the store refuses (StoreMoved) when
	// another version is current, unless it is Version itself (a retried
	// publish stays a no-op success). Nil publishes over whatever is there
	// (callers without an observation: tests, tools).
	Expect *Expect
	// RollForward marks the publish of a first rotation's version that
	// its own run, holding the lease, decided to finish (a store it cannot
	// be put back from: rollForward): the store publishes it even where a
	// discard of the same run withdrew it before (an earlier compensation
	// of the run that could not see the stranded store). Any other publish
	// of a withdrawn run is refused (Withdrawn).
	RollForward bool
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
	// Discard says the version RunID published never became really
	// current (a failed run is being put back): the store's previous
	// version must go back to what it was before that publish, so that
	// previous always holds the last version that was really current.
	Discard bool
	// Expect, when not nil, names the version the rollback must make
	// current (the one that was current before RunID published): the
	// store refuses (StoreMoved) when its previous version is another one
	// — moved, deleted or replaced by hand since — rather than make an
	// unknown credential current.
	Expect *Expect
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
	// RecheckAt, when set on an answer that did not pass, is when the
	// answer can change next (a delay's end): verify looks again exactly
	// then. Zero: the check is polled (Poller).
	RecheckAt time.Time
}

// Poller is implemented by a check whose answer changes at a time only
// the world knows (a client's reload, a provider's record): verify asks
// it again every PollInterval while it does not pass. A check that is
// neither a Poller nor answers with RecheckAt is asked again every
// DefaultPoll.
type Poller interface {
	PollInterval() time.Duration
}
