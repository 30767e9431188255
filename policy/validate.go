package policy

import (
	"crypto/sha256"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	// Time zones are checked at load; embedding the database makes
	// validation give the same answer in a scratch container.
	_ "time/tzdata"

	"github.com/robfig/cron/v3"
)

var (
	classNameRE = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	storeNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)
	secretIDRE  = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*(/[a-z0-9][a-z0-9._-]*)*$`)
	pgRoleRE    = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,50}$`)
	hoursRE     = regexp.MustCompile(`^([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-3]):([0-5][0-9])$`)
	alphabetRE  = regexp.MustCompile(`^[A-Za-z0-9._~-]*$`)
)

// weekdays are the names window.days accepts.
var weekdays = []string{"mon", "tue", "wed", "thu", "fri", "sat", "sun"}

// reservedConnectionKeys are the keys a store writes itself beside the
// secret (see rotation.Version.Data); connection may not set them.
var reservedConnectionKeys = []string{"password", "username", "key_id", "version", "run_id",
	"rotated_at", "fingerprint", "secret_field", "secret_fields"}

// validator checks a decoded File and reports, through the decoder, every
// problem at the position of the field concerned.
type validator struct {
	d *decoder
	f *File
	// crons caches what cronProblem says about each schedule.
	crons map[string]string
	// base is the index in the file of f.Secrets[0] (a piece of a large
	// file is validated on its own: stream.go), and x what the pieces
	// share (nil: f is the whole file).
	base int
	x    *across
	// onlySecrets: validate the secrets, not the header (a piece after
	// the first of a large file with mistakes: the first gave the
	// header's errors, stream.go). An error a secret gives at a field of
	// the header is still given, once per secret as for a whole file.
	onlySecrets bool
	// laterLookups: a management_secret that names no secret of f is
	// not an error here; the caller looks it up among the whole list (a
	// piece of a large file, parseStreamed).
	laterLookups bool
	// ids are the ids of f's secrets, for management_secret (made on
	// first use).
	ids map[string]bool
}

// across is what the validation of a file's pieces (stream.go) carries
// from one piece to the next: what the validator checks across the list
// of secrets, as it would over the whole list.
type across struct {
	ids    *names
	first  map[targetID]use
	owners map[string]map[string]use
	// lookups are the management_secret references not found in their
	// piece, checked once the list is read against the ids (ids.seen, and
	// other: those not taken there, malformed or empty).
	lookups []lookup
	other   map[string]bool
}

// lookup is a reference to another secret by id, and the error given
// if it names none: in the piece's errors already, where the whole
// loader gives it (errors at one place keep their order), and dropped
// when the id is found.
type lookup struct {
	id  string
	err *Error
}

// cross returns what is checked across the list: the pieces' shared
// state, or a new one for a whole file.
func (v *validator) cross() *across {
	if v.x == nil {
		v.x = newAcross()
	}
	return v.x
}

func newAcross() *across {
	return &across{ids: &names{kind: "id", verb: "used", re: secretIDRE,
		expected: "a path-like id of lowercase letters, digits, ., _ and - separated by / (such as db/postgres)",
		missing:  "required: a path-like id such as db/postgres"},
		first: map[targetID]use{}, owners: map[string]map[string]use{}}
}

// has reports whether the file sets the field at path.
func (v *validator) has(path string) bool {
	_, ok := v.d.pos[path]
	return ok
}

// parent strips the last component (".name" or "[i]") of a field path.
func parent(path string) string {
	i := strings.LastIndexAny(path, ".[")
	if i < 0 {
		return ""
	}
	return path[:i]
}

// where returns the position of the field at path; for a field the file
// does not set, the key of the nearest enclosing field that it does.
func (v *validator) where(path string) Position {
	if p, ok := v.d.pos[path]; ok {
		return p
	}
	for p := parent(path); p != ""; p = parent(p) {
		if pos, ok := v.d.keyPos[p]; ok {
			return pos
		}
		if pos, ok := v.d.pos[p]; ok {
			return pos
		}
	}
	return Position{File: v.d.file, Line: 1, Column: 1}
}

// errf reports a problem with the field at path, unless the field or one
// that contains it already failed to decode.
func (v *validator) errf(path, format string, args ...any) {
	if v.muted(path) {
		return
	}
	v.d.errs = append(v.d.errs, Errorf(v.where(path), path, format, args...))
}

// muted: the field at path, or one that contains it, failed to decode
// (that error is reported).
func (v *validator) muted(path string) bool {
	for p := path; ; p = parent(p) {
		if v.d.bad[p] {
			return true
		}
		if p == "" {
			return false
		}
	}
}

// oneOf formats allowed values for a message: "a", "b" or "c".
func oneOf(vals []string) string {
	q := make([]string, len(vals))
	for i, s := range vals {
		q[i] = fmt.Sprintf("%q", s)
	}
	if len(q) == 1 {
		return q[0]
	}
	return strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1]
}

func (v *validator) enum(path, val string, allowed ...string) {
	if val != "" && !slices.Contains(allowed, val) {
		v.errf(path, "must be %s, got %q", oneOf(allowed), val)
	}
}

func (v *validator) validate() {
	if v.onlySecrets {
		v.secrets()
		return
	}
	f := v.f
	if v.has("version") && f.Version != 1 {
		v.errf("version", "must be 1 (the only version of this format), got %d", f.Version)
	}
	v.defaults()
	v.classes()
	v.stores()
	v.secrets()
	v.notify()
}

func (v *validator) defaults() {
	d := &v.f.Defaults
	v.timing("defaults", timing{d.Grace, d.Monitor, d.Jitter, d.OnTimeout, d.Retry, d.Window})
	v.timeZone("defaults.time_zone", d.TimeZone)
	if c := d.Check; c != nil && c.Interval != nil && c.Interval.D() < MinCheckInterval {
		v.errf("defaults.check.interval", "must be at least 1m (how often the daemon tests what the stores publish), got %s", c.Interval)
	}
}

// timing holds the fields defaults, classes and secrets share.
type timing struct {
	grace, monitor, jitter *Duration
	onTimeout              string
	retry                  *RetrySpec
	window                 *WindowSpec
}

func (v *validator) timing(path string, t timing) {
	v.enum(join(path, "on_timeout"), t.onTimeout, OnTimeoutHold, OnTimeoutProceed)
	if r := t.retry; r != nil {
		p := join(path, "retry")
		if r.NextRun != nil && r.NextRun.D() < time.Minute {
			v.errf(p+".next_run", "must be at least 1m (how long after a failed run the secret is tried again), got %s", *r.NextRun)
		}
		if r.QuarantineAfter != nil && (*r.QuarantineAfter < 0 || *r.QuarantineAfter > MaxQuarantineAfter) {
			v.errf(p+".quarantine_after", "must be between 0 (never) and %d consecutive failed runs, got %d", MaxQuarantineAfter, *r.QuarantineAfter)
		}
		if v.has(p+".attempts") && (r.Attempts < 1 || r.Attempts > MaxRetryAttempts) {
			v.errf(p+".attempts", "must be between 1 and %d (tries of a step, the first included), got %d", MaxRetryAttempts, r.Attempts)
		}
		if r.Initial != nil && *r.Initial <= 0 {
			v.errf(p+".initial", "must be longer than 0s (the wait before the second try, such as 2s)")
		}
		if r.Max != nil && *r.Max <= 0 {
			v.errf(p+".max", "must be longer than 0s (the longest wait between tries, such as 1m)")
		}
		if r.Initial != nil && r.Max != nil && *r.Initial > 0 && *r.Max < *r.Initial {
			v.errf(p+".max", "must be at least initial (%s), got %s", r.Initial, r.Max)
		}
	}
	if t.window != nil {
		v.window(join(path, "window"), t.window)
	}
}

func (v *validator) interval(path string, d *Duration) {
	if d != nil && d.D() < MinInterval {
		v.errf(path, "must be at least 1h (rotations at most hourly), got %s", d)
	}
}

func (v *validator) timeZone(path, tz string) {
	if tz == "" {
		return
	}
	if _, err := time.LoadLocation(tz); err != nil || tz == "Local" {
		v.errf(path, "unknown time zone %q: expected an IANA name such as UTC or Europe/Berlin", tz)
	}
}

func (v *validator) window(path string, w *WindowSpec) {
	seen := map[string]bool{}
	for i, day := range w.Days {
		p := fmt.Sprintf("%s.days[%d]", path, i)
		switch {
		case !slices.Contains(weekdays, day):
			v.errf(p, "must be one of %s, got %q", strings.Join(weekdays, ", "), day)
		case seen[day]:
			v.errf(p, "%q is listed twice", day)
		}
		seen[day] = true
	}
	if w.Hours != "" {
		m := hoursRE.FindStringSubmatch(w.Hours)
		switch {
		case m == nil:
			v.errf(path+".hours", `expected "HH:MM-HH:MM" on a 24-hour clock, such as "02:00-05:00" or "22:00-04:00", got %q`, w.Hours)
		case m[1] == m[3] && m[2] == m[4]:
			v.errf(path+".hours", "start and end are the same (%s): leave hours out to allow the whole day", w.Hours)
		}
	}
	v.timeZone(path+".time_zone", w.TimeZone)
	for i, b := range w.Blackouts {
		p := fmt.Sprintf("%s.blackouts[%d]", path, i)
		from, to, isRange := strings.Cut(b, "..")
		if !isRange {
			to = from
		}
		start, err1 := time.Parse(time.DateOnly, from)
		end, err2 := time.Parse(time.DateOnly, to)
		switch {
		case err1 != nil || err2 != nil:
			v.errf(p, `expected a date "YYYY-MM-DD" or a range "YYYY-MM-DD..YYYY-MM-DD", got %q`, b)
		case end.Before(start):
			v.errf(p, "the range ends (%s) before it starts (%s)", to, from)
		}
	}
}

func (v *validator) classes() {
	for _, name := range sortedKeys(v.f.Classes) {
		c := v.f.Classes[name]
		p := "classes." + name
		if !classNameRE.MatchString(name) {
			v.d.errs = append(v.d.errs, Errorf(v.d.keyPos[p], p, "class names are lowercase letters, digits and _, starting with a letter"))
		}
		if c == nil {
			continue
		}
		_, builtin := builtinClasses()[name]
		if c.Interval == nil && !builtin {
			v.errf(p+".interval", "required: every class needs an interval such as 30d")
		}
		v.interval(p+".interval", c.Interval)
		v.timing(p, timing{c.Grace, c.Monitor, c.Jitter, c.OnTimeout, c.Retry, c.Window})
	}
}

func (v *validator) url(path, raw string) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		v.errf(path, "expected an http:// or https:// URL, got %q", raw)
	}
}

// names checks one name of a set that must be unique: required (missing
// says what it is for), well-formed, and not used before. seen maps each
// name to the field path of its first use.
type names struct {
	kind     string // "store", "webhook", "id"
	verb     string // "defined", "used"
	re       *regexp.Regexp
	expected string // what a well-formed name looks like
	missing  string // the message when it is absent
	// seen is where each name was first given.
	seen map[string]Position
}

func (v *validator) name(n *names, path, value string) {
	if n.seen == nil {
		n.seen = map[string]Position{}
	}
	switch {
	case value == "":
		v.errf(path, "%s", n.missing)
	case !n.re.MatchString(value):
		v.errf(path, "expected %s, got %q", n.expected, value)
	case n.seen[value] != Position{}:
		v.errf(path, "%s %q is already %s at %s", n.kind, value, n.verb, n.seen[value])
	default:
		n.seen[value] = v.where(path)
	}
}

func (v *validator) stores() {
	storeNames := &names{kind: "store", verb: "defined", re: storeNameRE,
		expected: "lowercase letters, digits, _ and -, starting with a letter or digit",
		missing:  "required: a name the secrets' publish entries refer to, such as local or vault"}
	for i, s := range v.f.Stores {
		p := fmt.Sprintf("stores[%d]", i)
		v.name(storeNames, p+".name", s.Name)
		kinds := 0
		for _, set := range []bool{s.Files != nil, s.Vault != nil, s.AWSSM != nil} {
			if set {
				kinds++
			}
		}
		if kinds != 1 {
			if !v.d.bad[p+".files"] && !v.d.bad[p+".vault"] && !v.d.bad[p+".awssm"] {
				v.errf(p, "must set exactly one kind of store: files, vault or awssm")
			}
		}
		if fs := s.Files; fs != nil {
			if fs.Dir == "" {
				v.errf(p+".files.dir", "required: the directory to write secrets into (relative to the policies file)")
			}
			v.enum(p+".files.format", fs.Format, FormatJSON, FormatRaw)
		}
		if vs := s.Vault; vs != nil {
			vp := p + ".vault"
			if vs.Address != "" {
				v.url(vp+".address", vs.Address)
			}
			a := vs.Auth
			methods := 0
			for _, set := range []bool{a.Token != nil, a.AppRole != nil, a.Kubernetes != nil} {
				if set {
					methods++
				}
			}
			if methods > 1 {
				v.errf(vp+".auth", "set at most one auth method (token, approle or kubernetes); none means VAULT_TOKEN")
			}
			if a.Token != nil && a.Token.Token.IsZero() {
				v.errf(vp+".auth.token.token", "required: {env: NAME} or {file: PATH} holding the Vault token")
			}
			if a.AppRole != nil {
				if a.AppRole.RoleID.IsZero() {
					v.errf(vp+".auth.approle.role_id", "required: {env: NAME} or {file: PATH} holding the AppRole role id")
				}
				if a.AppRole.SecretID.IsZero() {
					v.errf(vp+".auth.approle.secret_id", "required: {env: NAME} or {file: PATH} holding the AppRole secret id")
				}
			}
			if a.Kubernetes != nil && a.Kubernetes.Role == "" {
				v.errf(vp+".auth.kubernetes.role", "required: the Vault role bound to the service account")
			}
		}
		if as := s.AWSSM; as != nil {
			if as.Endpoint != "" {
				v.url(p+".awssm.endpoint", as.Endpoint)
			}
			for _, k := range sortedKeys(as.Tags) {
				if strings.TrimSpace(k) == "" {
					v.errf(p+".awssm.tags."+k, "tag keys must not be empty")
				}
			}
		}
	}
}

func (v *validator) secrets() {
	f := v.f
	if len(f.Secrets) == 0 {
		if v.has("secrets") {
			v.errf("secrets", "at least one secret is required")
		} else {
			v.errf("secrets", "required: at least one secret to manage (see the reference policies.yaml)")
		}
	}
	classes := mergeClasses(f.Classes)
	ids := v.cross().ids
	for i, s := range f.Secrets {
		p := fmt.Sprintf("secrets[%d]", v.base+i)
		v.name(ids, p+".id", s.ID)
		if _, ok := ids.seen[s.ID]; !ok && v.x.other != nil {
			v.x.other[s.ID] = true
		}
		switch {
		case s.Class == "":
			v.errf(p+".class", "required: one of %s", strings.Join(classNames(classes), ", "))
		case classes[s.Class] == nil && v.d.bad["classes."+s.Class]:
			// The class itself failed to decode; that error is reported.
		case classes[s.Class] == nil:
			v.errf(p+".class", "unknown class %q; the classes are %s (add one under classes)", s.Class, strings.Join(classNames(classes), ", "))
		}
		v.interval(p+".interval", s.Interval)
		if s.Cron != "" {
			if s.Interval != nil {
				v.errf(p+".cron", "set interval or cron, not both")
			}
			v.cron(p+".cron", s.Cron)
		}
		v.timing(p, timing{s.Grace, s.Monitor, s.Jitter, s.OnTimeout, s.Retry, s.Window})
		v.rotator(p+".rotator", s.Rotator)
		v.redisChecks(p, s)
		v.keyringSecret(p, s, classes[s.Class])
		v.awsIAMChecks(p, s)
		v.publish(p, s.Publish)
		for j, pub := range s.Publish {
			if pub != nil {
				v.derive(fmt.Sprintf("%s.publish[%d]", p, j), s, pub)
				v.sharedFields(fmt.Sprintf("%s.publish[%d]", p, j), s, pub)
			}
		}
		for j, c := range s.Checks {
			v.check(fmt.Sprintf("%s.checks[%d]", p, j), s, c)
		}
		v.effectiveRetry(p+".retry", f.Defaults.Retry, classes[s.Class], s.Retry)
	}
	v.publishTargets()
}

// effectiveRetry reports a secret whose merged retry has max below
// initial when the two come from different levels (a block that sets both
// is checked on its own).
func (v *validator) effectiveRetry(path string, defaults *RetrySpec, class *Class, own *RetrySpec) {
	initial, maxWait := Duration(DefaultRetryInitial), Duration(DefaultRetryMax)
	var initialFrom, maxFrom *RetrySpec
	levels := []*RetrySpec{defaults, nil, own}
	if class != nil {
		levels[1] = class.Retry
	}
	for _, r := range levels {
		if r == nil {
			continue
		}
		if r.Initial != nil {
			initial, initialFrom = *r.Initial, r
		}
		if r.Max != nil {
			maxWait, maxFrom = *r.Max, r
		}
	}
	if maxWait < initial && (initialFrom != maxFrom || initialFrom == nil) {
		v.errf(path, "the effective retry max (%s) is shorter than initial (%s) once merged with the class and defaults: set both here", maxWait, initial)
	}
}

func (v *validator) cron(path, spec string) {
	// Each schedule is checked once: aliases may repeat one many times.
	msg, ok := v.crons[spec]
	if !ok {
		msg = cronProblem(spec)
		if v.crons == nil {
			v.crons = map[string]string{}
		}
		v.crons[spec] = msg
	}
	if msg != "" {
		v.errf(path, "%s", msg)
	}
}

// cronProblem says what is wrong with a cron schedule, or "".
func cronProblem(spec string) string {
	sched, err := cron.ParseStandard(spec)
	if err != nil {
		return fmt.Sprintf("invalid cron schedule %q: %s; expected 5 fields (minute hour day-of-month month day-of-week) or a descriptor such as @weekly", spec, err)
	}
	// Rotations at most hourly, as for intervals: look at a year of runs.
	t := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	end := t.AddDate(1, 0, 0)
	prev := sched.Next(t)
	for n := 0; n < 10000 && !prev.IsZero() && prev.Before(end); n++ {
		next := sched.Next(prev)
		if next.IsZero() {
			break
		}
		if gap := next.Sub(prev); gap < MinInterval {
			return fmt.Sprintf("schedule %q runs %s apart: rotations are at most hourly", spec, Duration(gap))
		}
		prev = next
	}
	return ""
}

func (v *validator) rotator(path string, r RotatorSpec) {
	if r.Type() == "" {
		v.errf(path, "must set one kind of rotator: postgres, http_api, token, mysql, redis, keyring or awsiam")
		return
	}
	if kinds := countSet(r.Postgres != nil, r.HTTPAPI != nil, r.Token != nil, r.MySQL != nil, r.Redis != nil, r.Keyring != nil, r.AWSIAM != nil); kinds > 1 {
		v.errf(path, "must set exactly one kind of rotator (postgres, http_api, token, mysql, redis, keyring or awsiam), got %d", kinds)
	}
	v.apiRotator(path, r)
	v.mysqlRotator(path, r)
	v.redisRotator(path, r)
	v.keyringRotator(path, r)
	v.awsIAMRotator(path, r)
	if pg := r.Postgres; pg != nil {
		p := path + ".postgres"
		if pg.AdminDSN.IsZero() {
			v.errf(p+".admin_dsn", "required: {env: NAME} or {file: PATH} holding a DSN of a role that may ALTER ROLE")
		}
		switch {
		case pg.Role == "":
			v.errf(p+".role", "required: the group role (blue_green) or login role (single_role), such as app")
		case !pgRoleRE.MatchString(pg.Role):
			v.errf(p+".role", "expected a Postgres role name of lowercase letters, digits and _, not starting with a digit, at most %d characters (so that %s_green fits in 63 bytes), got %q", postgresRoleMaxLen, pg.Role, pg.Role)
		}
		v.enum(p+".mode", pg.Mode, ModeBlueGreen, ModeSingleRole)
		if v.has(p+".password.length") && (pg.Password.Length < MinPasswordLength || pg.Password.Length > MaxPasswordLength) {
			v.errf(p+".password.length", "must be between %d and %d, got %d", MinPasswordLength, MaxPasswordLength, pg.Password.Length)
		}
		if a := pg.Password.Alphabet; v.has(p + ".password.alphabet") {
			distinct := map[rune]bool{}
			for _, c := range a {
				distinct[c] = true
			}
			switch {
			case !alphabetRE.MatchString(a):
				v.errf(p+".password.alphabet", "may hold only characters safe in a connection URL without escaping (%s)", passwordAlphabetCharacters)
			case len(distinct) < MinPasswordAlphabet:
				v.errf(p+".password.alphabet", "needs at least %d distinct characters, got %d", MinPasswordAlphabet, len(distinct))
			}
		}
		for _, k := range sortedKeys(pg.Connection) {
			if slices.Contains(reservedConnectionKeys, k) {
				v.errf(p+".connection."+k, "%q is written by rotator itself; connection holds non-secret fields such as host, port, database, sslmode", k)
			}
		}
	}
}

func (v *validator) publish(path string, pubs []*PublishSpec) {
	if len(pubs) == 0 {
		v.errf(path+".publish", "required: at least one {store: NAME, path: PATH} to publish the secret to")
	}
	stores := make([]string, 0, len(v.f.Stores))
	for _, s := range v.f.Stores {
		if s.Name != "" {
			stores = append(stores, s.Name)
		}
	}
	for i, pub := range pubs {
		p := fmt.Sprintf("%s.publish[%d]", path, i)
		switch {
		case pub.Store == "":
			v.errf(p+".store", "required: the name of a store defined under stores")
		case !slices.Contains(stores, pub.Store) && len(stores) == 0:
			v.errf(p+".store", "unknown store %q: no stores are defined (add one under stores)", pub.Store)
		case !slices.Contains(stores, pub.Store):
			v.errf(p+".store", "unknown store %q; the stores are %s", pub.Store, strings.Join(stores, ", "))
		}
		switch {
		case pub.Path == "":
			v.errf(p+".path", "required: where the secret lives in the store, such as db/postgres.json")
		case absolutePath(pub.Path):
			v.errf(p+".path", "must be relative to the store (no leading /), got %q", pub.Path)
		case dotDotPath(pub.Path):
			v.errf(p+".path", "must not contain .., got %q", pub.Path)
		}
	}
}

func absolutePath(p string) bool {
	return strings.HasPrefix(p, "/") || strings.HasPrefix(p, `\`)
}

func dotDotPath(p string) bool {
	return slices.Contains(strings.FieldsFunc(p, func(r rune) bool { return r == '/' || r == '\\' }), "..")
}

// use is a publish entry: its field path, where it stands, and what the
// checks compare (not the entry itself: the pieces of a large file are
// freed as they are checked).
type use struct {
	pos         Position
	i, j        int32  // secrets[i].publish[j]
	store, spec string // its store and path as written
	fields      bool   // it owns fields of a shared document
}

// targetID stands for a publish target's key in the maps that hold one
// per publish entry of a file (100,000 secrets: 100,000 keys of ~60 bytes
// each, kept while a large file loads): the first 16 bytes of its SHA-256.
type targetID [16]byte

func idOf(key string) targetID {
	sum := sha256.Sum256([]byte(key))
	return targetID(sum[:16])
}

// useOf is the use of the publish entry pub, secrets[i].publish[j].
func (v *validator) useOf(i, j int, pub *PublishSpec) use {
	return use{pos: v.where(entryPath(i, j)), i: int32(i), j: int32(j), store: pub.Store, spec: pub.Path, fields: len(pub.Fields) > 0}
}

// path is the field path of the entry.
func (u use) path() string { return entryPath(int(u.i), int(u.j)) }

// entryPath is the field path of secrets[i].publish[j].
func entryPath(i, j int) string { return fmt.Sprintf("secrets[%d].publish[%d]", i, j) }

// publishTargets reports publish entries, across the whole file, that
// write to one place however it is spelled (./x and x, two names for one
// files directory, the same Vault mount and path): one rotation would
// silently replace the other's credential.
func (v *validator) publishTargets() {
	// first: the first entry at each target key; owners: for a shared
	// document (entries with fields), the entry owning each of its
	// fields.
	first, owners := v.cross().first, v.x.owners
	for i, s := range v.f.Secrets {
		for j, pub := range s.Publish {
			p := entryPath(v.base+i, j)
			if pub == nil || pub.Store == "" || pub.Path == "" || absolutePath(pub.Path) || dotDotPath(pub.Path) {
				continue // reported by publish
			}
			store, ok := v.f.Store(pub.Store)
			if !ok {
				continue
			}
			t, ok := v.f.publishTarget(store, pub)
			if !ok {
				// The store is not valid (reported): compare as written.
				t = target{key: "name\x00" + pub.Store + "\x00" + pub.Path}
			}
			prev, dup := first[idOf(t.key)]
			if dup && len(pub.Fields) > 0 && prev.fields {
				v.sharedOwners(v.base+i, j, pub, owners, t.key, s.ID)
				continue
			}
			if len(pub.Fields) > 0 {
				if owners[t.key] == nil {
					owners[t.key] = map[string]use{}
				}
				for _, f := range pub.Fields {
					owners[t.key][f] = v.useOf(v.base+i, j, pub)
				}
				owners[t.key][rotationMetaPrefix+"id\x00"+s.ID] = v.useOf(v.base+i, j, pub)
			}
			switch {
			case dup && (len(pub.Fields) > 0) != prev.fields:
				v.errf(p, "store %q, path %q is already published to at %s (%s): a secret that owns the whole document and one that owns fields of it (fields:) may not share it; give both fields:",
					pub.Store, pub.Path, prev.pos, prev.path())
			case !dup:
				first[idOf(t.key)] = v.useOf(v.base+i, j, pub)
			case prev.store == pub.Store && prev.spec == pub.Path:
				v.errf(p, "store %q, path %q is already published to at %s (%s): two publish entries may not write to one place",
					pub.Store, pub.Path, prev.pos, prev.path())
			default:
				v.errf(p, "store %q, path %q is already published to at %s (%s, as store %q, path %q): both are %s; two publish entries may not write to one place",
					pub.Store, pub.Path, prev.pos, prev.path(), prev.store, prev.spec, t.desc)
			}
		}
	}
}

// sharedOwners reports a publish entry that owns a field of a shared
// document another entry owns already, or a second entry of one secret in
// one document (they would share the metadata field).
func (v *validator) sharedOwners(i, j int, pub *PublishSpec, owners map[string]map[string]use, key, id string) {
	p := entryPath(i, j)
	own := owners[key]
	if u, ok := own[rotationMetaPrefix+"id\x00"+id]; ok {
		v.errf(p, "secret %q already publishes into store %q, path %q at %s (%s): one entry per secret and document; put all its fields in one", id, pub.Store, pub.Path, u.pos, u.path())
		return
	}
	own[rotationMetaPrefix+"id\x00"+id] = v.useOf(i, j, pub)
	for _, k := range sortedKeys(pub.Fields) {
		f := pub.Fields[k]
		if u, ok := own[f]; ok {
			v.errf(p+".fields."+k, "field %q of store %q, path %q is already owned by %s (%s): two secrets may not own one field", f, pub.Store, pub.Path, u.pos, u.path())
			continue
		}
		own[f] = v.useOf(i, j, pub)
	}
}

func (v *validator) events(path string, evs []string) {
	for i, e := range evs {
		v.enum(fmt.Sprintf("%s[%d]", path, i), e, AllEvents()...)
	}
}

func (v *validator) notify() {
	n := v.f.Notify
	if n.RemindBefore != nil && *n.RemindBefore <= 0 {
		v.errf("notify.remind_before", "must be longer than 0s (such as 3d); leave it out to send no reminders")
	}
	if s := n.Slack; s != nil {
		p := "notify.slack"
		switch {
		case v.d.bad[p+".webhook_url"] || v.d.bad[p+".token"]:
		case (s.WebhookURL == nil) == (s.Token == nil):
			v.errf(p, "set exactly one of webhook_url (an incoming webhook) or token (a bot token, with channel)")
		case s.Token != nil && s.Channel == "":
			v.errf(p+".channel", "required with token: the channel to post to, such as #ops")
		}
		if s.APIURL != "" {
			v.url(p+".api_url", s.APIURL)
		}
		v.events(p+".events", s.Events)
	}
	hooks := &names{kind: "webhook", verb: "defined", re: storeNameRE,
		expected: "lowercase letters, digits, _ and -, starting with a letter or digit",
		missing:  "required: a name for logs, such as pager"}
	for i, w := range n.Webhooks {
		p := fmt.Sprintf("notify.webhooks[%d]", i)
		v.name(hooks, p+".name", w.Name)
		if w.URL == "" {
			v.errf(p+".url", "required: the http:// or https:// URL to post events to")
		} else {
			v.url(p+".url", w.URL)
		}
		if w.Secret.IsZero() {
			v.errf(p+".secret", "required: {env: NAME} or {file: PATH} holding the HMAC-SHA256 key")
		}
		v.events(p+".events", w.Events)
	}
}
