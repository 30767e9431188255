package policy

import (
	"fmt"
	"time"
)

// Position is a place in a policies file.
type Position struct {
	File   string
	Line   int
	Column int
}

// String formats the position as file:line:column, leaving out a line or
// column that is not known (zero).
func (p Position) String() string {
	switch {
	case p.Line == 0:
		return p.File
	case p.Column == 0:
		return fmt.Sprintf("%s:%d", p.File, p.Line)
	}
	return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Column)
}

// IsZero reports whether the position is unknown.
func (p Position) IsZero() bool { return p == Position{} }

// Duration is a time.Duration that policies.yaml writes as "90d", "12h",
// "30m", "45s" or combinations ("1d12h").
type Duration time.Duration

// D returns the duration as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Ref points at secret material kept outside policies.yaml: an environment
// variable or a file. Exactly one of Env and File is set.
type Ref struct {
	Env  string `yaml:"env"`
	File string `yaml:"file"`
	// Pos is where the reference stands in the policies file.
	Pos Position `yaml:"-"`
	// Dir is the directory a relative File is resolved against: the
	// directory of the policies file, set by Load and Parse.
	Dir string `yaml:"-"`
}

// File is a loaded, validated policies file.
type File struct {
	// Path is the file it was loaded from (the name given to Parse).
	Path string `yaml:"-"`
	// Hash is the content hash of the bytes it was parsed from (Hash).
	Hash string `yaml:"-"`
	// dir is the directory of Path, absolute where it could be made so.
	dir      string
	Version  int               `yaml:"version"`
	Defaults Defaults          `yaml:"defaults"`
	Classes  map[string]*Class `yaml:"classes"`
	Stores   []*StoreSpec      `yaml:"stores"`
	Secrets  []*SecretSpec     `yaml:"secrets"`
	Notify   NotifySpec        `yaml:"notify"`
	// pieces, for a File loaded in pieces, is what the next load of the
	// file reuses from it (stream.go).
	pieces *pieceIndex
	// source, for a File loaded from a large file, is its text (reuse.go).
	source *Source
}

// Defaults apply to every class that does not set its own value.
type Defaults struct {
	Grace     *Duration   `yaml:"grace"`
	Monitor   *Duration   `yaml:"monitor"`
	OnTimeout string      `yaml:"on_timeout"`
	Retry     *RetrySpec  `yaml:"retry"`
	Window    *WindowSpec `yaml:"window"`
	Jitter    *Duration   `yaml:"jitter"`
	// TimeZone for windows and for `rotator plan` output (IANA name,
	// default UTC).
	TimeZone string `yaml:"time_zone"`
	// Check is the daemon's scheduled `rotator check` (see
	// PublishedCheckSpec).
	Check *PublishedCheckSpec `yaml:"check"`
}

// PublishedCheckSpec sets how often the daemon tests what every store
// publishes as current (`rotator check`), each secret at its own offset
// within the interval.
type PublishedCheckSpec struct {
	// Interval between two checks of a secret (default 15m, at least 1m).
	Interval *Duration `yaml:"interval"`
}

// WindowSpec limits when rotations may start.
type WindowSpec struct {
	// Days are the weekdays allowed: mon, tue, wed, thu, fri, sat, sun.
	// Empty means every day.
	Days []string `yaml:"days"`
	// Hours is "HH:MM-HH:MM" in the time zone; it may wrap past midnight
	// ("22:00-04:00"). Empty means all day.
	Hours string `yaml:"hours"`
	// TimeZone is an IANA name; default Defaults.TimeZone, then UTC.
	TimeZone string `yaml:"time_zone"`
	// Blackouts are dates ("2026-12-24") or inclusive ranges
	// ("2026-12-20..2027-01-02") on which nothing starts.
	Blackouts []string `yaml:"blackouts"`
	Pos       Position `yaml:"-"`
}

// Class is a kind of secret with its rotation interval. admin_token (30d),
// database (90d) and api_key (180d) are built in; the file may override
// them and add others.
type Class struct {
	Interval  *Duration   `yaml:"interval"`
	Grace     *Duration   `yaml:"grace"`
	Monitor   *Duration   `yaml:"monitor"`
	OnTimeout string      `yaml:"on_timeout"`
	Retry     *RetrySpec  `yaml:"retry"`
	Window    *WindowSpec `yaml:"window"`
	Jitter    *Duration   `yaml:"jitter"`
	// SlackChannel overrides notify.slack.channel for the class.
	SlackChannel string   `yaml:"slack_channel"`
	Pos          Position `yaml:"-"`
}

// RetrySpec bounds the retries of a failing step.
type RetrySpec struct {
	// Attempts is the number of tries of a step, the first included.
	Attempts int `yaml:"attempts"`
	// Initial is the wait before the second try; it doubles each time.
	Initial *Duration `yaml:"initial"`
	// Max caps the wait between tries.
	Max *Duration `yaml:"max"`
	// NextRun: after a run failed (its tries spent), the secret is tried
	// again at the first opening of its window after this long.
	NextRun *Duration `yaml:"next_run"`
	// QuarantineAfter consecutive failed runs stop automatic attempts
	// until `rotator resume`; 0 never quarantines.
	QuarantineAfter *int `yaml:"quarantine_after"`
}

// StoreSpec defines a secret store by name. Exactly one of Files, Vault and
// AWSSM is set.
type StoreSpec struct {
	Name  string     `yaml:"name"`
	Files *FilesSpec `yaml:"files"`
	Vault *VaultSpec `yaml:"vault"`
	AWSSM *AWSSMSpec `yaml:"awssm"`
	Pos   Position   `yaml:"-"`
}

// Type returns "files", "vault" or "awssm".
func (s *StoreSpec) Type() string {
	switch {
	case s.Files != nil:
		return "files"
	case s.Vault != nil:
		return "vault"
	case s.AWSSM != nil:
		return "awssm"
	}
	return ""
}

// FilesSpec is a directory of files (Docker secrets, Kubernetes mounts).
type FilesSpec struct {
	// Dir is the directory; relative paths are relative to the policies file.
	Dir string `yaml:"dir"`
	// Format is "json" (default: username, password, version...) or "raw"
	// (the secret alone; metadata in a .meta.json beside it).
	Format string `yaml:"format"`
}

// VaultSpec is a HashiCorp Vault KV v2 mount.
type VaultSpec struct {
	// Address defaults to VAULT_ADDR.
	Address   string        `yaml:"address"`
	Mount     string        `yaml:"mount"`
	Namespace string        `yaml:"namespace"`
	TLS       VaultTLSSpec  `yaml:"tls"`
	Auth      VaultAuthSpec `yaml:"auth"`
}

// VaultTLSSpec configures TLS to Vault.
type VaultTLSSpec struct {
	CAFile     string `yaml:"ca_file"`
	ServerName string `yaml:"server_name"`
}

// VaultAuthSpec chooses the auth method: at most one is set; none means a
// token from VAULT_TOKEN.
type VaultAuthSpec struct {
	Token      *VaultTokenAuth      `yaml:"token"`
	AppRole    *VaultAppRoleAuth    `yaml:"approle"`
	Kubernetes *VaultKubernetesAuth `yaml:"kubernetes"`
}

// VaultTokenAuth uses a token.
type VaultTokenAuth struct {
	Token Ref `yaml:"token"`
}

// VaultAppRoleAuth logs in with AppRole.
type VaultAppRoleAuth struct {
	Mount    string `yaml:"mount"` // default "approle"
	RoleID   Ref    `yaml:"role_id"`
	SecretID Ref    `yaml:"secret_id"`
}

// VaultKubernetesAuth logs in with a service-account token.
type VaultKubernetesAuth struct {
	Mount   string `yaml:"mount"` // default "kubernetes"
	Role    string `yaml:"role"`
	JWTFile string `yaml:"jwt_file"` // default /var/run/secrets/kubernetes.io/serviceaccount/token
}

// AWSSMSpec is AWS Secrets Manager in one region.
type AWSSMSpec struct {
	Region   string `yaml:"region"`
	Endpoint string `yaml:"endpoint"`
	KMSKeyID string `yaml:"kms_key_id"`
	// Create the secret when it does not exist (default true).
	Create *bool             `yaml:"create"`
	Tags   map[string]string `yaml:"tags"`
}

// SecretSpec is one managed secret.
type SecretSpec struct {
	// ID is path-like: db/postgres, api/openrouter.
	ID          string         `yaml:"id"`
	Class       string         `yaml:"class"`
	Description string         `yaml:"description"`
	Rotator     RotatorSpec    `yaml:"rotator"`
	Publish     []*PublishSpec `yaml:"publish"`
	Checks      []*CheckSpec   `yaml:"checks"`
	// Overrides of the class.
	Interval  *Duration   `yaml:"interval"`
	Grace     *Duration   `yaml:"grace"`
	Monitor   *Duration   `yaml:"monitor"`
	OnTimeout string      `yaml:"on_timeout"`
	Retry     *RetrySpec  `yaml:"retry"`
	Window    *WindowSpec `yaml:"window"`
	Jitter    *Duration   `yaml:"jitter"`
	// Cron replaces the interval with a cron schedule (5 fields, or a
	// descriptor such as @weekly), parsed with robfig/cron.
	Cron string `yaml:"cron"`
	// AdoptAge: on a first rotation, count the age from the version the
	// stores already hold instead of rotating at once.
	AdoptAge     bool     `yaml:"adopt_age"`
	SlackChannel string   `yaml:"slack_channel"`
	Pos          Position `yaml:"-"`
}

// RotatorSpec chooses the kind of credential: exactly one is set.
type RotatorSpec struct {
	Postgres *PostgresSpec `yaml:"postgres"`
	// HTTPAPI manages API keys a provider issues over its HTTP API.
	HTTPAPI *HTTPAPISpec `yaml:"http_api"`
	// Token generates tokens rotator issues itself (admin tokens,
	// service-to-service shared tokens).
	Token *TokenSpec `yaml:"token"`
	// MySQL rotates the password of a MariaDB/MySQL user (blue/green).
	MySQL *MySQLSpec `yaml:"mysql"`
	// Redis rotates the password of a Redis ACL user (rotators/redis).
	Redis *RedisSpec `yaml:"redis"`
	// Keyring rotates a ring of random signing or encryption keys that
	// rotator keeps itself (rotators/keyring).
	Keyring *KeyringSpec `yaml:"keyring"`
	// AWSIAM rotates the access keys of an AWS IAM user
	// (rotators/awsiam).
	AWSIAM *AWSIAMSpec `yaml:"awsiam"`
	Pos    Position    `yaml:"-"`
}

// Type returns "postgres", "http_api", "token", "mysql", "redis",
// "keyring" or "awsiam".
func (r RotatorSpec) Type() string {
	switch {
	case r.Postgres != nil:
		return "postgres"
	case r.HTTPAPI != nil:
		return "http_api"
	case r.Token != nil:
		return "token"
	case r.MySQL != nil:
		return "mysql"
	case r.Redis != nil:
		return "redis"
	case r.Keyring != nil:
		return "keyring"
	case r.AWSIAM != nil:
		return "awsiam"
	}
	return ""
}

// HTTPAPISpec manages API keys at a provider that creates and revokes them
// over HTTP with a management credential. A preset ("openrouter") fills in
// base_url and every call the file leaves out.
type HTTPAPISpec struct {
	// Preset names a built-in provider: "openrouter".
	Preset string `yaml:"preset"`
	// BaseURL is prepended to call URLs that start with "/".
	BaseURL string `yaml:"base_url"`
	// Management is the credential that may create and revoke keys;
	// exactly one of Management and ManagementSecret is set.
	Management *Ref `yaml:"management"`
	// ManagementSecret is the id of another managed secret whose current
	// version is the management credential.
	ManagementSecret string `yaml:"management_secret"`
	// NamePrefix starts the name of every key rotator creates; the name is
	// <prefix><secret id>-<run id>, so keys left by a crashed run can be
	// found and revoked. Default "rotator-".
	NamePrefix string `yaml:"name_prefix"`
	// Field is the name the key is published under (default "api_key").
	Field string `yaml:"field"`
	// Timeout bounds each call (default 30s).
	Timeout *Duration `yaml:"timeout"`
	// Create makes a new key (key_path and id_path say where the key and
	// its id are in the answer). Verify calls the provider with a key
	// ({key}) and succeeds when the key works. Revoke disables a key by
	// id ({key_id}). Restore (optional) re-enables a revoked key. List
	// (optional) lists keys, to find strays. LastUsed (optional) says when
	// a key was last used, for the last_used check.
	Create   *HTTPCallSpec `yaml:"create"`
	Verify   *HTTPCallSpec `yaml:"verify"`
	Revoke   *HTTPCallSpec `yaml:"revoke"`
	Restore  *HTTPCallSpec `yaml:"restore"`
	List     *HTTPCallSpec `yaml:"list"`
	LastUsed *HTTPCallSpec `yaml:"last_used"`
}

// HTTPCallSpec is one HTTP call to a provider. URL, headers and body are
// templates with placeholders: {name} (the new key's name), {key_id},
// {secret_id}, {run_id}, and, in headers and body only, {management} (the
// management credential) and {key} (the key being verified). In the body
// each value is JSON-escaped; in the URL it is path-escaped.
type HTTPCallSpec struct {
	Method  string            `yaml:"method"`
	URL     string            `yaml:"url"`
	Headers map[string]string `yaml:"headers"`
	Body    string            `yaml:"body"`
	// Status lists the statuses that mean success (default: any 2xx).
	Status []int `yaml:"status"`
	// GoneStatus lists the statuses that mean the key does not exist
	// (default 404 and 410): revoking it is then done already.
	GoneStatus []int `yaml:"gone_status"`
	// Paths into the JSON answer: dot-separated keys and list indexes
	// (data.hash, items.0.id).
	KeyPath      string `yaml:"key_path"`       // create: the new key
	IDPath       string `yaml:"id_path"`        // create: its id; list: an item's id
	ItemsPath    string `yaml:"items_path"`     // list: the list of keys
	NamePath     string `yaml:"name_path"`      // list: an item's name
	LastUsedPath string `yaml:"last_used_path"` // last_used: an RFC 3339 time or Unix seconds
	UsagePath    string `yaml:"usage_path"`     // last_used: a usage counter, unused while it stays put
}

// TokenSpec generates tokens rotator issues itself: Prefix followed by
// Length random characters (A-Z a-z 0-9) from crypto/rand.
type TokenSpec struct {
	Prefix string `yaml:"prefix"`
	// Length is the number of random characters, 24..256 (default 40).
	Length int `yaml:"length"`
	// Field is the name the token is published under (default "token").
	Field string `yaml:"field"`
}

// RedisSpec rotates the password of a Redis ACL user: new passwords are
// added beside the current one by their SHA-256, old ones removed by it.
type RedisSpec struct {
	// AdminURL connects as rotator's own user
	// (redis://rotator:…@host:6379/0, rediss:// for TLS); see
	// deploy/redis/rotator.acl for its least privilege.
	AdminURL Ref `yaml:"admin_url"`
	// User is the ACL user whose password is rotated.
	User     string       `yaml:"user"`
	Password PasswordSpec `yaml:"password"`
	// Connection is published beside the credential: host, port, db.
	Connection map[string]string `yaml:"connection"`
}

// KeyringSpec rotates a key ring: random keys rotator generates itself,
// published together (the signing key, the keys still accepted, the key
// about to become signing) as one JSON document that appsecret.KeyRing
// reads. See rotators/keyring.
type KeyringSpec struct {
	// Size is each new key's length in bytes: at least the algorithm's
	// hash (32, 48, 64 bytes), which is the default; at most 1024.
	Size int `yaml:"size"`
	// Algorithm is the HMAC of the tokens the keys sign: HS256 (default),
	// HS384 or HS512.
	Algorithm string `yaml:"algorithm"`
	// MaxTokenLifetime is the longest lifetime of a token the keys sign
	// (or of anything they encrypt), plus the clocks' skew: a key that
	// stopped signing stays in the ring at least this long. Required.
	MaxTokenLifetime *Duration `yaml:"max_token_lifetime"`
	// Field is the name the ring is published under (default "keyring").
	Field string `yaml:"field"`
}

// AWSIAMSpec rotates the access keys of one AWS IAM user: IAM allows two
// keys per user, so the new key is created beside the current one,
// published, and the old one deactivated, then deleted when the next
// rotation needs its slot (see rotators/awsiam).
type AWSIAMSpec struct {
	// User is the IAM user whose access keys are rotated.
	User string `yaml:"user"`
	// Region of the STS endpoint new keys are tested against (default:
	// AWS_REGION or the profile's). IAM itself is global.
	Region string `yaml:"region"`
	// Endpoint replaces the IAM and STS endpoints (a VPC endpoint, or a
	// test server such as moto).
	Endpoint string `yaml:"endpoint"`
	// NewKeyWait is how long generate keeps trying a new key that AWS
	// refuses (IAM is eventually consistent: a new key may be refused for
	// a few seconds after it is created). Default 30s.
	NewKeyWait *Duration `yaml:"new_key_wait"`
	// Connection is published beside the credential (region, ...).
	Connection map[string]string `yaml:"connection"`
}

// PostgresSpec rotates a Postgres role password.
type PostgresSpec struct {
	// AdminDSN connects as a role that may ALTER ROLE the login roles.
	AdminDSN Ref `yaml:"admin_dsn"`
	// Role is the group role (blue_green) or the login role (single_role).
	Role string `yaml:"role"`
	// Mode is "blue_green" (default) or "single_role".
	Mode string `yaml:"mode"`
	// TerminateSessions ends sessions still open on the old role at retire.
	TerminateSessions bool         `yaml:"terminate_sessions"`
	Password          PasswordSpec `yaml:"password"`
	// Connection is published beside the credential so applications can
	// build a DSN: host, port, database, sslmode.
	Connection map[string]string `yaml:"connection"`
}

// PasswordSpec shapes generated passwords.
type PasswordSpec struct {
	Length   int    `yaml:"length"`   // default 32
	Alphabet string `yaml:"alphabet"` // default A-Z a-z 0-9 (safe in a URL)
}

// PublishSpec names a store and the path of the secret in it.
type PublishSpec struct {
	Store string `yaml:"store"`
	Path  string `yaml:"path"`
	// Derive adds fields rendered from the credential by a template (see
	// internal/derive), such as
	// url: "postgres://{username}:{password}@{host}:{port}/{database}".
	// A field whose template uses the secret is secret.
	Derive map[string]string `yaml:"derive"`
	// Fields, when set, publishes into some fields of a document others
	// write too (one Vault path or AWS secret per application): it maps
	// the credential's fields (password, username, a derived field, a
	// connection key) to the document's field names
	// ({password: db_password, url: database_url}). Only those fields and
	// rotator's metadata field (rotator.<secret id>) are written; every
	// other field is kept.
	Fields map[string]string `yaml:"fields"`
	Pos    Position          `yaml:"-"`
}

// CheckSpec is one way of verifying that clients moved: exactly one is set.
type CheckSpec struct {
	// Delay passes once the duration has passed since publish.
	Delay *Duration `yaml:"delay"`
	// HTTP passes once every listed client reports the new version.
	HTTP *HTTPCheckSpec `yaml:"http"`
	// LastUsed passes once the provider reports the old key unused for a
	// while (http_api rotators with a last_used call).
	LastUsed *LastUsedCheckSpec `yaml:"last_used"`
	// Sessions sets how often the Postgres session count (which every
	// blue_green secret's verify asks: no session of the old role left)
	// is polled; it adds no check of its own.
	Sessions *SessionsCheckSpec `yaml:"sessions"`
	Pos      Position           `yaml:"-"`
}

// SessionsCheckSpec paces the session count of a blue_green Postgres
// secret.
type SessionsCheckSpec struct {
	// Interval between two counts (default DefaultSessionsInterval).
	Interval *Duration `yaml:"interval"`
}

// HTTPCheckSpec asks each client which version of the secret it uses: a
// GET of each URL answers with the version's fingerprint (or number) in a
// JSON field or a header.
type HTTPCheckSpec struct {
	URLs []string `yaml:"urls"`
	// Match is what the clients report: "fingerprint" (default) or
	// "version".
	Match string `yaml:"match"`
	// JSONPath is where the value is in a JSON answer (default: the value
	// of match, as appsecret's handler answers); Header reads a response
	// header instead. At most one of the two.
	JSONPath string `yaml:"json_path"`
	Header   string `yaml:"header"`
	// Timeout bounds each request (default 5s).
	Timeout *Duration `yaml:"timeout"`
	// Interval between two rounds of requests while the check does not
	// pass (default DefaultHTTPCheckInterval).
	Interval *Duration `yaml:"interval"`
}

// LastUsedCheckSpec passes once the old key has not been used for
// UnusedFor.
type LastUsedCheckSpec struct {
	UnusedFor *Duration `yaml:"unused_for"`
	// Interval between two questions to the provider while the check
	// does not pass (default DefaultLastUsedInterval).
	Interval *Duration `yaml:"interval"`
}

// NotifySpec says whom to tell, and about what.
type NotifySpec struct {
	Slack    *SlackSpec     `yaml:"slack"`
	Webhooks []*WebhookSpec `yaml:"webhooks"`
	// RemindBefore sends a notice this long before a scheduled rotation
	// (optional).
	RemindBefore *Duration `yaml:"remind_before"`
}

// Event names a notification may be sent for.
const (
	EventRotationFailed    = "rotation_failed"
	EventRollback          = "rollback"
	EventQuarantined       = "quarantined"
	EventOverdue           = "overdue"
	EventRotationSucceeded = "rotation_succeeded"
	EventUpcoming          = "upcoming"
	EventResolved          = "resolved"
	// EventCredentialBroken: a store publishes a credential that does not
	// work at the target (`rotator check`, and the daemon's scheduled check).
	EventCredentialBroken = "credential_broken"
	// EventDrift: the state database and the stores disagree; the secret
	// is left alone until `rotator adopt`.
	EventDrift = "drift"
	// EventNeedsAttention: a failed run's compensation is incomplete (a
	// store could not be put back); later ticks continue it.
	EventNeedsAttention = "needs_attention"
)

// SlackSpec posts to Slack: an incoming webhook, or a bot token and a
// channel (exactly one of WebhookURL and Token).
type SlackSpec struct {
	WebhookURL *Ref   `yaml:"webhook_url"`
	Token      *Ref   `yaml:"token"`
	Channel    string `yaml:"channel"`
	// APIURL overrides Slack's API base URL (tests, proxies).
	APIURL string `yaml:"api_url"`
	// Events to send; default: rotation_failed, rollback, quarantined,
	// overdue, credential_broken, resolved.
	Events []string `yaml:"events"`
	Pos    Position `yaml:"-"`
}

// WebhookSpec posts events as JSON signed with HMAC-SHA256.
type WebhookSpec struct {
	Name string `yaml:"name"`
	URL  string `yaml:"url"`
	// Secret is the HMAC key.
	Secret Ref      `yaml:"secret"`
	Events []string `yaml:"events"`
	Pos    Position `yaml:"-"`
}
