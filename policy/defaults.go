package policy

import (
	"maps"
	"reflect"
	"slices"
	"time"
)

// Built-in defaults, used where neither the secret, its class nor the
// file's defaults set a value.
const (
	DefaultGrace         = 10 * time.Minute
	DefaultMonitor       = 5 * time.Minute
	DefaultOnTimeout     = OnTimeoutHold
	DefaultRetryAttempts = 3
	DefaultRetryInitial  = 2 * time.Second
	DefaultRetryMax      = time.Minute
	// DefaultRetryNextRun is how long after a failed run the secret is
	// tried again (at its window's next opening after that).
	DefaultRetryNextRun = time.Hour
	// DefaultQuarantineAfter consecutive failed runs quarantine a secret.
	DefaultQuarantineAfter = 3
	// MaxQuarantineAfter bounds quarantine_after.
	MaxQuarantineAfter = 100
	DefaultJitter      = 30 * time.Minute
	// DefaultCheckInterval is how often the daemon checks each secret's
	// published credentials (defaults.check.interval); MinCheckInterval
	// bounds it.
	DefaultCheckInterval = 15 * time.Minute
	MinCheckInterval     = time.Minute
	DefaultTimeZone      = "UTC"
	// How often verify asks a polling check again while it does not pass
	// (its interval in policies.yaml): the session count of a blue_green
	// secret, an http check, a last_used check. A delay check is not
	// polled: verify wakes when it ends. Every interval is between
	// MinPollInterval and MaxPollInterval.
	DefaultSessionsInterval  = time.Second
	DefaultHTTPCheckInterval = 2 * time.Second
	DefaultLastUsedInterval  = time.Minute
	MinPollInterval          = time.Second
	MaxPollInterval          = time.Hour

	DefaultVaultMount          = "secret"
	DefaultAppRoleMount        = "approle"
	DefaultKubernetesMount     = "kubernetes"
	DefaultKubernetesJWTFile   = "/var/run/secrets/kubernetes.io/serviceaccount/token"
	DefaultFilesFormat         = "json"
	DefaultPostgresMode        = ModeBlueGreen
	DefaultPasswordLength      = 32
	DefaultPasswordAlphabet    = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	MinInterval                = time.Hour
	MinPasswordLength          = 16
	MaxPasswordLength          = 128
	MinPasswordAlphabet        = 16
	MaxRetryAttempts           = 20
	postgresRoleMaxLen         = 51 // + "_green" stays within 63 bytes
	passwordAlphabetCharacters = "letters, digits and - . _ ~"
)

// Values of on_timeout, mode and files format.
const (
	OnTimeoutHold    = "hold"
	OnTimeoutProceed = "proceed"
	ModeBlueGreen    = "blue_green"
	ModeSingleRole   = "single_role"
	FormatJSON       = "json"
	FormatRaw        = "raw"
)

// builtinClasses returns the classes every file has.
func builtinClasses() map[string]*Class {
	d := func(v time.Duration) *Duration { x := Duration(v); return &x }
	return map[string]*Class{
		"admin_token": {Interval: d(30 * Day)},
		"database":    {Interval: d(90 * Day)},
		"api_key":     {Interval: d(180 * Day)},
	}
}

// DefaultEvents are the events sent when a Slack or webhook block lists
// none: the ones that need a person.
func DefaultEvents() []string {
	return []string{EventRotationFailed, EventRollback, EventQuarantined, EventOverdue, EventCredentialBroken,
		EventDrift, EventNeedsAttention, EventResolved}
}

// AllEvents lists every event name.
func AllEvents() []string {
	return []string{EventRotationFailed, EventRollback, EventQuarantined, EventOverdue,
		EventCredentialBroken, EventDrift, EventNeedsAttention, EventRotationSucceeded, EventUpcoming, EventResolved}
}

// mergeClasses lays the file's classes over the built-in ones: a field the
// file sets replaces the built-in value, the others are kept.
func mergeClasses(file map[string]*Class) map[string]*Class {
	out := builtinClasses()
	for name, c := range file {
		if c == nil {
			continue
		}
		base, ok := out[name]
		if !ok {
			out[name] = c
			continue
		}
		merged := *base
		bv, cv := reflect.ValueOf(&merged).Elem(), reflect.ValueOf(c).Elem()
		for i := range cv.NumField() {
			if !cv.Field(i).IsZero() {
				bv.Field(i).Set(cv.Field(i))
			}
		}
		out[name] = &merged
	}
	return out
}

// fillDefaults writes the documented defaults into the specs, so the
// packages that build stores and rotators read them as set.
func (f *File) fillDefaults() {
	if f.Version == 0 {
		f.Version = 1
	}
	f.Classes = mergeClasses(f.Classes)
	f.fillStoreDefaults()
	for _, s := range f.Secrets {
		f.fillSecretDefaults(s)
	}
	f.fillNotifyDefaults()
}

// fillStoreDefaults is fillDefaults of the stores.
func (f *File) fillStoreDefaults() {
	for _, s := range f.Stores {
		switch {
		case s.Files != nil:
			if s.Files.Format == "" {
				s.Files.Format = DefaultFilesFormat
			}
		case s.Vault != nil:
			if s.Vault.Mount == "" {
				s.Vault.Mount = DefaultVaultMount
			}
			if a := s.Vault.Auth.AppRole; a != nil && a.Mount == "" {
				a.Mount = DefaultAppRoleMount
			}
			if k := s.Vault.Auth.Kubernetes; k != nil {
				if k.Mount == "" {
					k.Mount = DefaultKubernetesMount
				}
				if k.JWTFile == "" {
					k.JWTFile = DefaultKubernetesJWTFile
				}
			}
		case s.AWSSM != nil:
			if s.AWSSM.Create == nil {
				t := true
				s.AWSSM.Create = &t
			}
		}
	}
}

// fillHeaderDefaults is fillDefaults of everything but the secrets; a
// streamed load (stream.go) fills the secrets it decoded on their own and
// leaves the ones it reused from the previous load as they are (filled
// then, and shared with that File: never written after a load).
func (f *File) fillHeaderDefaults() {
	if f.Version == 0 {
		f.Version = 1
	}
	f.Classes = mergeClasses(f.Classes)
	f.fillStoreDefaults()
	f.fillNotifyDefaults()
}

// fillSecretDefaults is fillDefaults of one secret.
func (f *File) fillSecretDefaults(s *SecretSpec) {
	f.fillAPIDefaults(s)
	if p := s.Rotator.Postgres; p != nil {
		if p.Mode == "" {
			p.Mode = DefaultPostgresMode
		}
		if p.Password.Length == 0 {
			p.Password.Length = DefaultPasswordLength
		}
		if p.Password.Alphabet == "" {
			p.Password.Alphabet = DefaultPasswordAlphabet
		}
	}
}

// fillNotifyDefaults is fillDefaults of the notify block.
func (f *File) fillNotifyDefaults() {
	if sl := f.Notify.Slack; sl != nil && len(sl.Events) == 0 {
		sl.Events = DefaultEvents()
	}
	for _, w := range f.Notify.Webhooks {
		if len(w.Events) == 0 {
			w.Events = DefaultEvents()
		}
	}
}

// Retry is the effective retry policy of a secret.
type Retry struct {
	Attempts     int
	Initial, Max time.Duration
	// NextRun and QuarantineAfter govern whole runs (see RetrySpec).
	NextRun         time.Duration
	QuarantineAfter int
}

// Settings are a secret's effective settings.
type Settings struct {
	Class string
	// Interval between rotations (from the secret, else its class).
	Interval time.Duration
	// Cron, when set, replaces Interval.
	Cron           string
	Grace, Monitor time.Duration
	OnTimeout      string
	Retry          Retry
	// Window is nil when rotations may start at any time; its TimeZone is
	// always set.
	Window   *WindowSpec
	Jitter   time.Duration
	TimeZone string
	AdoptAge bool
	// SlackChannel is the secret's, its class's, or notify.slack.channel.
	SlackChannel string
}

// Settings returns the effective settings of s: each value comes from the
// secret, else its class, else the file's defaults, else the built-in
// defaults. Retry is merged field by field; a window is taken whole.
func (f *File) Settings(s *SecretSpec) Settings {
	c := f.Classes[s.Class]
	if c == nil {
		c = &Class{}
	}
	df := &f.Defaults
	out := Settings{
		Class:     s.Class,
		Cron:      s.Cron,
		Grace:     firstDuration(DefaultGrace, s.Grace, c.Grace, df.Grace),
		Monitor:   firstDuration(DefaultMonitor, s.Monitor, c.Monitor, df.Monitor),
		Jitter:    firstDuration(DefaultJitter, s.Jitter, c.Jitter, df.Jitter),
		Interval:  firstDuration(0, s.Interval, c.Interval),
		OnTimeout: firstString(DefaultOnTimeout, s.OnTimeout, c.OnTimeout, df.OnTimeout),
		TimeZone:  firstString(DefaultTimeZone, df.TimeZone),
		AdoptAge:  s.AdoptAge,
		Retry: Retry{Attempts: DefaultRetryAttempts, Initial: DefaultRetryInitial, Max: DefaultRetryMax,
			NextRun: DefaultRetryNextRun, QuarantineAfter: DefaultQuarantineAfter},
	}
	var slackChannel string
	if f.Notify.Slack != nil {
		slackChannel = f.Notify.Slack.Channel
	}
	out.SlackChannel = firstString("", s.SlackChannel, c.SlackChannel, slackChannel)
	// Lowest precedence first, so each later one overrides what it sets.
	for _, r := range []*RetrySpec{df.Retry, c.Retry, s.Retry} {
		if r == nil {
			continue
		}
		if r.Attempts != 0 {
			out.Retry.Attempts = r.Attempts
		}
		if r.Initial != nil {
			out.Retry.Initial = r.Initial.D()
		}
		if r.Max != nil {
			out.Retry.Max = r.Max.D()
		}
		if r.NextRun != nil {
			out.Retry.NextRun = r.NextRun.D()
		}
		if r.QuarantineAfter != nil {
			out.Retry.QuarantineAfter = *r.QuarantineAfter
		}
	}
	for _, w := range []*WindowSpec{s.Window, c.Window, df.Window} {
		if w != nil {
			cp := *w
			cp.Days = append([]string(nil), w.Days...)
			cp.Blackouts = append([]string(nil), w.Blackouts...)
			if cp.TimeZone == "" {
				cp.TimeZone = out.TimeZone
			}
			out.Window = &cp
			break
		}
	}
	return out
}

func firstDuration(def time.Duration, ds ...*Duration) time.Duration {
	for _, d := range ds {
		if d != nil {
			return d.D()
		}
	}
	return def
}

func firstString(def string, ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return def
}

// classNames lists the class names, sorted.
func classNames(m map[string]*Class) []string {
	return sortedKeys(m)
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

// fillAPIDefaults writes the defaults of the http_api and token rotators
// and of the http checks into s.
func (f *File) fillAPIDefaults(s *SecretSpec) {
	if h := s.Rotator.HTTPAPI; h != nil {
		h.applyPreset()
		if h.NamePrefix == "" {
			h.NamePrefix = DefaultNamePrefix
		}
		if h.Field == "" {
			h.Field = DefaultAPIKeyField
		}
		if h.Timeout == nil {
			d := Duration(DefaultHTTPTimeout)
			h.Timeout = &d
		}
	}
	if t := s.Rotator.Token; t != nil {
		if t.Length == 0 {
			t.Length = DefaultTokenLength
		}
		if t.Field == "" {
			t.Field = DefaultTokenField
		}
	}
	if k := s.Rotator.Keyring; k != nil {
		if k.Algorithm == "" {
			k.Algorithm = DefaultKeyringAlgorithm
		}
		if k.Field == "" {
			k.Field = DefaultKeyringField
		}
	}
	for _, c := range s.Checks {
		if h := c.HTTP; h != nil && h.Interval == nil {
			d := Duration(DefaultHTTPCheckInterval)
			h.Interval = &d
		}
		if l := c.LastUsed; l != nil && l.Interval == nil {
			d := Duration(DefaultLastUsedInterval)
			l.Interval = &d
		}
		if h := c.HTTP; h != nil {
			if h.Match == "" {
				h.Match = MatchFingerprint
			}
			if h.JSONPath == "" && h.Header == "" {
				h.JSONPath = h.Match
			}
			if h.Timeout == nil {
				d := Duration(DefaultCheckTimeout)
				h.Timeout = &d
			}
		}
	}
}

// SessionsInterval is how often verify counts the sessions of the old
// role of s: its sessions check's interval, else DefaultSessionsInterval.
func (s *SecretSpec) SessionsInterval() time.Duration {
	for _, c := range s.Checks {
		if c.Sessions != nil && c.Sessions.Interval != nil {
			return c.Sessions.Interval.D()
		}
	}
	return DefaultSessionsInterval
}

// CheckInterval is how often the daemon checks each secret's published
// credentials: defaults.check.interval, else DefaultCheckInterval.
func (f *File) CheckInterval() time.Duration {
	if c := f.Defaults.Check; c != nil && c.Interval != nil {
		return c.Interval.D()
	}
	return DefaultCheckInterval
}
