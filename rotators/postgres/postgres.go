package postgres

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rotator/rotator/internal/dsn"
	"github.com/rotator/rotator/internal/secret"
	"github.com/rotator/rotator/internal/sharedpool"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
)

// Rotator rotates the password of a Postgres role, in blue/green or
// single-role mode (see the package documentation). It is safe for
// concurrent use; Close releases its admin connections.
type Rotator struct {
	role       string
	mode       string
	length     int
	alphabet   string
	connection map[string]string
	adminRef   string // where the admin DSN comes from, for messages
	adminHost  string // host:port of the admin DSN, for messages
	adminUser  string

	poolCfg  *pgxpool.Config // admin connections
	loginCfg *pgx.ConnConfig // template for logins as the managed roles

	rnd    io.Reader
	logger *slog.Logger

	mu     sync.Mutex
	pool   *pgxpool.Pool
	closed bool
	pools  *Pools                           // shared admin pools (WithPools), nil: a pool of its own
	shared *sharedpool.Entry[*pgxpool.Pool] // the shared pool taken, which Close releases
	dsn    string                           // the admin DSN, to key the shared pool
}

var _ rotation.Rotator = (*Rotator)(nil)

// Option configures a Rotator.
type Option func(*Rotator)

// WithRand sets the random source for passwords and SCRAM salts
// (crypto/rand.Reader by default). For tests only.
func WithRand(r io.Reader) Option { return func(x *Rotator) { x.rnd = r } }

// WithLogger sets the logger (slog.Default() otherwise).
func WithLogger(l *slog.Logger) Option { return func(x *Rotator) { x.logger = l } }

// Validate checks a spec without any I/O: the role name, the mode and the
// password shape, as this package needs them. Defaults (mode blue_green,
// length 32, alphabet A-Za-z0-9) apply to zero fields.
func Validate(spec *policy.PostgresSpec) error {
	if spec == nil {
		return errors.New("postgres: no spec")
	}
	var errs []error
	mode := modeOf(spec)
	switch mode {
	case policy.ModeBlueGreen, policy.ModeSingleRole:
	default:
		errs = append(errs, fmt.Errorf("mode: expected %q or %q, got %q", policy.ModeBlueGreen, policy.ModeSingleRole, spec.Mode))
	}
	maxRole := 63
	if mode == policy.ModeBlueGreen {
		maxRole = 63 - len("_green")
	}
	switch {
	case spec.Role == "":
		errs = append(errs, errors.New("role: required"))
	case len(spec.Role) > maxRole:
		errs = append(errs, fmt.Errorf("role: %q is longer than %d bytes (Postgres truncates names at 63 bytes; blue/green appends _green)", spec.Role, maxRole))
	case strings.ContainsRune(spec.Role, 0):
		errs = append(errs, errors.New("role: contains a NUL byte"))
	}
	length, alphabet := passwordShape(spec)
	if length < policy.MinPasswordLength || length > policy.MaxPasswordLength {
		errs = append(errs, fmt.Errorf("password.length: must be between %d and %d, got %d", policy.MinPasswordLength, policy.MaxPasswordLength, length))
	}
	for i := 0; i < len(alphabet); i++ {
		if c := alphabet[i]; c <= ' ' || c >= 0x7f || c == '\'' || c == '\\' {
			errs = append(errs, fmt.Errorf("password.alphabet: only printable ASCII without quotes, backslashes or spaces is allowed, got %q", rune(c)))
			break
		}
	}
	if n := len(distinctBytes(alphabet)); n < policy.MinPasswordAlphabet {
		errs = append(errs, fmt.Errorf("password.alphabet: needs at least %d distinct characters, got %d", policy.MinPasswordAlphabet, n))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	return nil
}

func modeOf(spec *policy.PostgresSpec) string {
	if spec.Mode == "" {
		return policy.DefaultPostgresMode
	}
	return spec.Mode
}

func passwordShape(spec *policy.PostgresSpec) (int, string) {
	length, alphabet := spec.Password.Length, spec.Password.Alphabet
	if length == 0 {
		length = policy.DefaultPasswordLength
	}
	if alphabet == "" {
		alphabet = policy.DefaultPasswordAlphabet
	}
	return length, alphabet
}

// New validates spec, parses the admin DSN (no connection is made until
// the first call that needs one) and returns a Rotator.
func New(spec *policy.PostgresSpec, adminDSN secret.Value, opts ...Option) (*Rotator, error) {
	if err := Validate(spec); err != nil {
		return nil, err
	}
	ref := spec.AdminDSN.String()
	if spec.AdminDSN.IsZero() {
		ref = "the admin DSN"
	} else {
		ref = "admin_dsn (" + ref + ")"
	}
	if adminDSN.IsZero() {
		return nil, fmt.Errorf("postgres: %s is empty", ref)
	}
	// internal/dsn: a DSN that does not parse is not shown at all, and
	// every error of this DSN has its password redacted in every form.
	if err := dsn.Check(adminDSN.Reveal()); err != nil {
		return nil, fmt.Errorf("postgres: parse %s: %w", ref, err)
	}
	poolCfg, err := pgxpool.ParseConfig(adminDSN.Reveal())
	if err != nil {
		return nil, fmt.Errorf("postgres: parse %s: %w", ref, dsn.Error(err, adminDSN.Reveal()))
	}
	poolCfg.MaxConns = 2
	loginCfg, err := pgx.ParseConfig(adminDSN.Reveal())
	if err != nil {
		return nil, fmt.Errorf("postgres: parse %s: %w", ref, dsn.Error(err, adminDSN.Reveal()))
	}
	length, alphabet := passwordShape(spec)
	r := &Rotator{
		role:       spec.Role,
		mode:       modeOf(spec),
		length:     length,
		alphabet:   alphabet,
		connection: maps.Clone(spec.Connection),
		adminRef:   ref,
		adminHost:  fmt.Sprintf("%s:%d", poolCfg.ConnConfig.Host, poolCfg.ConnConfig.Port),
		adminUser:  poolCfg.ConnConfig.User,
		poolCfg:    poolCfg,
		loginCfg:   loginCfg,
		rnd:        rand.Reader,
		logger:     slog.Default(),
		dsn:        adminDSN.Reveal(),
	}
	for _, o := range opts {
		o(r)
	}
	r.logger = r.logger.With("rotator", "postgres", "role", r.role, "mode", r.mode)
	return r, nil
}

// Close releases the admin connections: its own pool's, or its share of
// the shared pool (WithPools), which closes with it only when its DSN was
// superseded and this was its last rotator. The Rotator must not be used
// afterwards.
func (r *Rotator) Close() {
	r.mu.Lock()
	p, e := r.pool, r.shared
	r.pool, r.shared, r.closed = nil, nil, true
	r.mu.Unlock()
	switch {
	case e != nil:
		r.pools.set.Release(e)
	case p != nil:
		p.Close()
	}
}

// admin returns a connection of the admin role. The pool is created on
// first use (creating it does no I/O; connecting happens in Acquire, outside
// the mutex).
func (r *Rotator) admin(ctx context.Context) (*pgxpool.Conn, error) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, rotation.Permanent(errors.New("postgres rotator is closed"))
	}
	if r.pool == nil {
		var p *pgxpool.Pool
		var err error
		if r.pools != nil {
			var e *sharedpool.Entry[*pgxpool.Pool]
			if e, err = r.pools.get(r.dsn, r.poolCfg); err == nil {
				p, r.shared = e.Pool, e
			}
		} else {
			p, err = pgxpool.NewWithConfig(context.Background(), r.poolCfg)
		}
		if err != nil {
			r.mu.Unlock()
			return nil, fmt.Errorf("admin connection pool: %w", err)
		}
		r.pool = p
	}
	p := r.pool
	r.mu.Unlock()
	c, err := p.Acquire(ctx)
	if err != nil {
		return nil, r.connectError(err)
	}
	return c, nil
}

// connectError explains a failed admin connection.
func (r *Rotator) connectError(err error) error {
	err = dsn.Error(err, r.dsn)
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "28P01", "28000": // invalid_password, invalid_authorization_specification
			return rotation.Permanent(fmt.Errorf("connect to %s as admin role %q: authentication failed: check the DSN that %s holds (user and password) and pg_hba.conf on that server: %w",
				r.adminHost, r.adminUser, r.adminRef, err))
		case "3D000": // invalid_catalog_name
			return rotation.Permanent(fmt.Errorf("connect to %s: the database in %s does not exist: %w", r.adminHost, r.adminRef, err))
		}
	}
	return fmt.Errorf("connect to %s as admin role %q (%s): %w", r.adminHost, r.adminUser, r.adminRef, err)
}

// createRoleHint is what a permission error of ALTER/CREATE ROLE needs.
const createRoleHint = "the admin role needs CREATEROLE (PostgreSQL 16+: and ADMIN OPTION on the managed roles); " +
	"see \"Privileges of the admin role\" in the postgres rotator documentation"

// sqlError wraps err with action and marks the failures retrying cannot
// fix as permanent.
func sqlError(action string, err error) error {
	return sqlErrorHint(action, createRoleHint, err)
}

// sqlErrorHint is sqlError with the advice a permission error gets.
func sqlErrorHint(action, hint string, err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "42501": // insufficient_privilege
			return rotation.Permanent(fmt.Errorf("%s: %w (%s)", action, err, hint))
		case "42704": // undefined_object
			return rotation.Permanent(fmt.Errorf("%s: %w", action, err))
		case fenceSQLState:
			return rotation.Permanent(fmt.Errorf("%s: %w: %w", action, rotation.ErrFenced, err))
		}
	}
	return fmt.Errorf("%s: %w", action, err)
}

// ident quotes a role name as an SQL identifier.
func ident(name string) string { return pgx.Identifier{name}.Sanitize() }

// literal quotes s as an SQL string literal (standard_conforming_strings).
func literal(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// Role names of the blue/green pair.
func (r *Rotator) blue() string  { return r.role + "_blue" }
func (r *Rotator) green() string { return r.role + "_green" }

func (r *Rotator) inPair(name string) bool {
	return name == r.role || name == r.blue() || name == r.green()
}

type roleState struct {
	exists, login, super bool
}

// roleStates reads the LOGIN state of the named roles.
func roleStates(ctx context.Context, q *pgxpool.Conn, names ...string) (map[string]roleState, error) {
	rows, err := q.Query(ctx, "SELECT rolname, rolcanlogin, rolsuper FROM pg_roles WHERE rolname = ANY($1)", names)
	if err != nil {
		return nil, err
	}
	out := make(map[string]roleState, len(names))
	for rows.Next() {
		var n string
		var s roleState
		if err := rows.Scan(&n, &s.login, &s.super); err != nil {
			return nil, err
		}
		s.exists = true
		out[n] = s
	}
	return out, rows.Err()
}

func (r *Rotator) notInitialized(missing string) error {
	if missing == r.role {
		return rotation.Permanent(fmt.Errorf("role %q does not exist: create it (CREATE ROLE %s LOGIN PASSWORD ...) and run `rotator init`", r.role, ident(r.role)))
	}
	return rotation.Permanent(fmt.Errorf("role %q does not exist: run `rotator init --secret ID` to create the blue/green pair of %q", missing, r.role))
}

// current finds the role clients use now (blue/green): known when the
// engine knows it, else from the LOGIN attributes.
func (r *Rotator) current(known string, st map[string]roleState) (string, error) {
	for _, n := range []string{r.role, r.blue(), r.green()} {
		if !st[n].exists {
			return "", r.notInitialized(n)
		}
	}
	if known != "" {
		if !r.inPair(known) {
			return "", rotation.Permanent(fmt.Errorf("current credential %q is not one of %s, %s, %s", known, r.role, r.blue(), r.green()))
		}
		return known, nil
	}
	// The group role keeps its LOGIN (and the password clients had
	// before init) until the first rotation retires it: while it has it,
	// it is what clients use, whatever a crashed first run left on blue.
	if st[r.role].login {
		return r.role, nil
	}
	b, g := st[r.blue()].login, st[r.green()].login
	switch {
	case b && g:
		return "", rotation.Permanent(fmt.Errorf("both %s and %s can log in and the current one is not recorded: "+
			"find the one clients use (pg_stat_activity), ALTER ROLE the other NOLOGIN, and run again", r.blue(), r.green()))
	case b:
		return r.blue(), nil
	case g:
		return r.green(), nil
	}
	return r.role, nil
}

func (r *Rotator) standby(current string) string {
	if current == r.blue() {
		return r.green()
	}
	return r.blue()
}

// Generate sets a fresh password on the standby role (blue/green) or on the
// role itself (single-role), then logs in with it. The password reaches the
// server only as a SCRAM-SHA-256 verifier. Calling it again re-keys the
// same role again.
//
// In single-role mode Generate honours Prepare and Apply: with Prepare it
// only draws the password (after checking that the role exists) and
// returns it Unapplied; with Apply it sets that password on the role and
// logs in with it, so the engine can stage before the one password
// changes and publish right after.
func (r *Rotator) Generate(ctx context.Context, req rotation.GenerateRequest) (rotation.GenerateResponse, error) {
	single := r.mode == policy.ModeSingleRole
	if single && req.Prepare && req.Apply == nil {
		return r.prepare(ctx)
	}
	var pw secret.Value
	if single && req.Apply != nil {
		if req.Apply.Username != r.role || req.Apply.Secret.IsZero() {
			return rotation.GenerateResponse{}, rotation.Permanent(fmt.Errorf("apply: the prepared credential is for %q, not %q", req.Apply.Username, r.role))
		}
		pw = req.Apply.Secret
	} else {
		var err error
		if pw, err = generatePassword(r.rnd, r.length, r.alphabet); err != nil {
			return rotation.GenerateResponse{}, fmt.Errorf("generate password: %w", err)
		}
	}
	verifier, err := scramVerifier(r.rnd, pw)
	if err != nil {
		return rotation.GenerateResponse{}, fmt.Errorf("compute SCRAM verifier: %w", err)
	}
	target, replaces, err := r.rekey(ctx, req.Current.Username, verifier, req.Fence)
	if err != nil {
		return rotation.GenerateResponse{}, scrub(err, pw)
	}
	if err := r.login(ctx, target, pw); err != nil {
		lerr := fmt.Errorf("log in as %q with its new password: %w", target, scrub(err, pw))
		if r.mode != policy.ModeSingleRole && target != replaces {
			// The standby now has a password nobody holds: it must not be
			// left able to log in (the engine never learns its name).
			if _, derr := r.setLogin(context.WithoutCancel(ctx), target, false, "undo the re-key of", req.Fence); derr != nil {
				return rotation.GenerateResponse{}, fmt.Errorf("%w; and setting %q NOLOGIN again failed: %v", lerr, target, scrub(derr, pw))
			}
			r.logger.WarnContext(ctx, "new password did not log in; standby disabled again", "secret_id", req.SecretID, "target_role", target)
		}
		return rotation.GenerateResponse{}, lerr
	}
	r.logger.InfoContext(ctx, "re-keyed role", "secret_id", req.SecretID, "run_id", req.RunID,
		"target_role", target, "fingerprint", pw.Fingerprint())
	return rotation.GenerateResponse{Credential: rotation.Credential{
		Username: target,
		Secret:   pw,
		Field:    "password",
		Extra:    maps.Clone(r.connection),
	}, Replaces: rotation.CredentialMeta{Username: replaces}}, nil
}

// prepare draws the single role's next password without setting it.
func (r *Rotator) prepare(ctx context.Context) (rotation.GenerateResponse, error) {
	c, err := r.admin(ctx)
	if err != nil {
		return rotation.GenerateResponse{}, err
	}
	st, err := roleStates(ctx, c, r.role)
	c.Release()
	if err != nil {
		return rotation.GenerateResponse{}, sqlError("read role "+r.role, err)
	}
	if !st[r.role].exists {
		return rotation.GenerateResponse{}, rotation.Permanent(fmt.Errorf("role %q does not exist: create it (CREATE ROLE %s LOGIN) or fix postgres.role", r.role, ident(r.role)))
	}
	pw, err := generatePassword(r.rnd, r.length, r.alphabet)
	if err != nil {
		return rotation.GenerateResponse{}, fmt.Errorf("generate password: %w", err)
	}
	return rotation.GenerateResponse{Unapplied: true, Credential: rotation.Credential{
		Username: r.role,
		Secret:   pw,
		Field:    "password",
		Extra:    maps.Clone(r.connection),
	}, Replaces: rotation.CredentialMeta{Username: r.role}}, nil
}

// rekey sets verifier as the password of the role Generate re-keys and
// returns that role and the one it replaces.
func (r *Rotator) rekey(ctx context.Context, current, verifier string, f rotation.Fence) (target, replaces string, err error) {
	c, err := r.admin(ctx)
	if err != nil {
		return "", "", err
	}
	defer c.Release()
	var stmt string
	if r.mode == policy.ModeSingleRole {
		target, replaces = r.role, r.role
		st, err := roleStates(ctx, c, target)
		if err != nil {
			return "", "", sqlError("read role "+target, err)
		}
		if !st[target].exists {
			return "", "", rotation.Permanent(fmt.Errorf("role %q does not exist: create it (CREATE ROLE %s LOGIN) or fix postgres.role", target, ident(target)))
		}
		stmt = "ALTER ROLE " + ident(target) + " WITH PASSWORD " + literal(verifier)
	} else {
		st, err := roleStates(ctx, c, r.role, r.blue(), r.green())
		if err != nil {
			return "", "", sqlError("read roles of "+r.role, err)
		}
		cur, err := r.current(current, st)
		if err != nil {
			return "", "", err
		}
		target, replaces = r.standby(cur), cur
		// What the target shows (DESIGN.md, rule 1): the standby is the
		// role no client uses. One that can log in and has sessions is in
		// use (a client holds a password no store publishes, or a
		// rollback left it enabled); re-keying it would lock those clients
		// out at their next connection.
		if st[target].login {
			n, err := r.sessions(ctx, c, target)
			if err != nil {
				return "", "", err
			}
			if n > 0 {
				// Not permanent: a short session (a client that read the
				// store just before a rollback) ends by the next try.
				return "", "", fmt.Errorf("%w: the standby role %q can log in and has %d client session(s): rotator does not re-key a role clients use; "+
					"find them (SELECT * FROM pg_stat_activity WHERE usename = '%s'), move them to %q, then retry", ErrStandbyInUse, target, n, target, cur)
			}
		}
		stmt = "ALTER ROLE " + ident(target) + " WITH LOGIN PASSWORD " + literal(verifier)
	}
	if err := r.fenced(ctx, c, f, "rekey", stmt); err != nil {
		return "", "", sqlError(fmt.Sprintf("re-key role %q", target), err)
	}
	return target, replaces, nil
}

// ErrStandbyInUse: the role blue/green would re-key has client sessions
// and can log in.
var ErrStandbyInUse = errors.New("standby in use")

// loginApp is the application_name of rotator's own logins as the managed
// roles (the test after a re-key): they are not clients.
const loginApp = "rotator-login-test"

// sessions counts the client sessions of role: every backend of it but
// this connection's and rotator's own login tests.
func (r *Rotator) sessions(ctx context.Context, c *pgxpool.Conn, role string) (int, error) {
	var n int
	err := c.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
		WHERE usename = $1 AND pid <> pg_backend_pid() AND application_name <> $2`, role, loginApp).Scan(&n)
	if err != nil {
		return 0, sqlError(fmt.Sprintf("count sessions of %q", role), err)
	}
	return n, nil
}

// setPassword sets verifier on role without changing LOGIN.
func (r *Rotator) setPassword(ctx context.Context, role, verifier string, f rotation.Fence, action string) error {
	c, err := r.admin(ctx)
	if err != nil {
		return err
	}
	defer c.Release()
	if err := r.fenced(ctx, c, f, action, "ALTER ROLE "+ident(role)+" WITH PASSWORD "+literal(verifier)); err != nil {
		return sqlError(fmt.Sprintf("set password of role %q", role), err)
	}
	return nil
}

// login connects as user with password to the admin DSN's host, port and
// database (and TLS settings) and runs a query.
func (r *Rotator) login(ctx context.Context, user string, password secret.Value) error {
	if user == "" {
		return rotation.Permanent(errors.New("credential has no username"))
	}
	cfg := r.loginCfg.Copy()
	cfg.User = user
	cfg.Password = password.Reveal()
	cfg.RuntimeParams["application_name"] = loginApp
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	// Exec without arguments is one simple-protocol round trip (a query
	// would prepare the statement first on the new connection: two).
	if _, err := conn.Exec(ctx, "SELECT 1"); err != nil {
		return fmt.Errorf("query as %q: %w", user, err)
	}
	return nil
}

// Test logs in with the credential and runs SELECT 1.
func (r *Rotator) Test(ctx context.Context, req rotation.TestRequest) error {
	c := req.Credential
	if err := r.login(ctx, c.Username, c.Secret); err != nil {
		return fmt.Errorf("test credential %s: %w", c.Meta(), scrub(err, c.Secret))
	}
	return nil
}

// Clients counts the sessions of the old role (blue/green). Single-role
// mode cannot tell old from new sessions: ErrUnsupported.
func (r *Rotator) Clients(ctx context.Context, req rotation.ClientsRequest) (rotation.ClientsResponse, error) {
	if r.mode == policy.ModeSingleRole {
		return rotation.ClientsResponse{}, fmt.Errorf("single-role mode cannot tell sessions of the old password from the new: %w", rotation.ErrUnsupported)
	}
	old := req.Old.Username
	if old == "" {
		return rotation.ClientsResponse{}, nil
	}
	c, err := r.admin(ctx)
	if err != nil {
		return rotation.ClientsResponse{}, err
	}
	defer c.Release()
	// client_addr is NULL for Unix sockets (client_port -1) and for
	// sessions the admin role may not inspect (client_port NULL too; grant
	// pg_read_all_stats to see them).
	rows, err := c.Query(ctx, `SELECT CASE WHEN client_addr IS NOT NULL THEN host(client_addr)
			WHEN client_port = -1 THEN 'local socket' ELSE 'unknown address' END, count(*)
		FROM pg_stat_activity
		WHERE usename = $1 AND pid <> pg_backend_pid()
		GROUP BY 1 ORDER BY 1`, old)
	if err != nil {
		return rotation.ClientsResponse{}, sqlError(fmt.Sprintf("count sessions of %q", old), err)
	}
	var (
		total int
		from  []string
	)
	for rows.Next() {
		var addr string
		var n int
		if err := rows.Scan(&addr, &n); err != nil {
			return rotation.ClientsResponse{}, sqlError(fmt.Sprintf("count sessions of %q", old), err)
		}
		total += n
		from = append(from, addr)
	}
	if err := rows.Err(); err != nil {
		return rotation.ClientsResponse{}, sqlError(fmt.Sprintf("count sessions of %q", old), err)
	}
	resp := rotation.ClientsResponse{Count: total}
	if total > 0 {
		noun := "sessions"
		if total == 1 {
			noun = "session"
		}
		resp.Detail = fmt.Sprintf("%d %s of %s (from %s)", total, noun, old, strings.Join(from, ", "))
	}
	return resp, nil
}

// Retire sets NOLOGIN on the old role (blue/green), and ends its sessions
// when asked. Existing sessions survive NOLOGIN otherwise. Retiring a role
// that is already NOLOGIN or gone does nothing. Single-role mode has
// nothing to retire: the old password stopped working at Generate.
func (r *Rotator) Retire(ctx context.Context, req rotation.RetireRequest) error {
	if r.mode == policy.ModeSingleRole {
		return nil
	}
	old := req.Old.Username
	switch {
	case old == "":
		return rotation.Permanent(errors.New("retire: no old role named"))
	case old == req.New.Username:
		return rotation.Permanent(fmt.Errorf("retire: refusing to disable %q: it is the new credential", old))
	case !r.inPair(old):
		return rotation.Permanent(fmt.Errorf("retire: refusing to disable %q: it is not one of %s, %s, %s", old, r.role, r.blue(), r.green()))
	}
	exists, err := r.setLogin(ctx, old, false, "retire", req.Fence)
	if err != nil {
		return err
	}
	if !exists {
		r.logger.WarnContext(ctx, "role to retire does not exist", "secret_id", req.SecretID, "old_role", old)
		return nil
	}
	if req.Terminate {
		c, err := r.admin(ctx)
		if err != nil {
			return err
		}
		defer c.Release()
		var n int
		err = c.QueryRow(ctx, `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))
			FROM pg_stat_activity WHERE usename = $1 AND pid <> pg_backend_pid()`, old).Scan(&n)
		if err != nil {
			return sqlErrorHint(fmt.Sprintf("terminate sessions of %q", old),
				"GRANT pg_signal_backend TO the admin role, or set terminate_sessions: false; the role is already NOLOGIN", err)
		}
		if n > 0 {
			r.logger.InfoContext(ctx, "terminated sessions", "secret_id", req.SecretID, "old_role", old, "sessions", n)
		}
	}
	r.logger.InfoContext(ctx, "retired role", "secret_id", req.SecretID, "old_role", old)
	return nil
}

// Restore re-enables a retired role (blue/green keeps its password while
// NOLOGIN). Single-role mode sets the previous password back when req
// carries it, and cannot restore otherwise (ErrNotRestorable).
func (r *Rotator) Restore(ctx context.Context, req rotation.RestoreRequest) error {
	if r.mode == policy.ModeSingleRole {
		return r.putBack(ctx, "restore", req.Previous, req.Fence)
	}
	old := req.Old.Username
	if !r.inPair(old) {
		return rotation.Permanent(fmt.Errorf("restore: refusing to enable %q: it is not one of %s, %s, %s", old, r.role, r.blue(), r.green()))
	}
	exists, err := r.setLogin(ctx, old, true, "restore", req.Fence)
	if err != nil {
		return err
	}
	if !exists {
		return fmt.Errorf("restore role %q: it no longer exists: %w", old, rotation.ErrNotRestorable)
	}
	r.logger.InfoContext(ctx, "restored role", "secret_id", req.SecretID, "old_role", old)
	return nil
}

// Discard disables the unpublished credential of a failed run: NOLOGIN on
// the standby (blue/green) unless it is the current role; in single-role
// mode the current password is set back from req.Previous.
func (r *Rotator) Discard(ctx context.Context, req rotation.DiscardRequest) error {
	if r.mode == policy.ModeSingleRole {
		return r.putBack(ctx, "discard", req.Previous, req.Fence)
	}
	n := req.New.Username
	switch {
	case n == "" || n == req.Current.Username:
		return nil
	case n != r.blue() && n != r.green():
		return rotation.Permanent(fmt.Errorf("discard: refusing to disable %q: it is not %s or %s", n, r.blue(), r.green()))
	}
	if _, err := r.setLogin(ctx, n, false, "discard", req.Fence); err != nil {
		return err
	}
	r.logger.InfoContext(ctx, "discarded unpublished credential", "secret_id", req.SecretID, "new_role", n)
	return nil
}

// setLogin gives role LOGIN (or NOLOGIN) unless it has it already; action
// names the step in errors. Fenced (f.Token set), it always sends the
// fenced statement, so that a refusal is seen and the marker moves. It
// reports false, changing nothing, when the role does not exist.
func (r *Rotator) setLogin(ctx context.Context, role string, login bool, action string, f rotation.Fence) (bool, error) {
	c, err := r.admin(ctx)
	if err != nil {
		return false, err
	}
	defer c.Release()
	st, err := roleStates(ctx, c, role)
	if err != nil {
		return false, sqlError(fmt.Sprintf("read role %q", role), err)
	}
	if !st[role].exists {
		return false, nil
	}
	if st[role].login != login || f.Token != 0 {
		attr := "NOLOGIN"
		if login {
			attr = "LOGIN"
		}
		if err := r.fenced(ctx, c, f, action, "ALTER ROLE "+ident(role)+" "+attr); err != nil {
			return true, sqlError(fmt.Sprintf("%s role %q (%s)", action, role, attr), err)
		}
	}
	return true, nil
}

// putBack sets prev's password on the single role and logs in with it.
func (r *Rotator) putBack(ctx context.Context, action string, prev *rotation.Credential, f rotation.Fence) error {
	if prev == nil || prev.Secret.IsZero() {
		return fmt.Errorf("%s role %q: single-role mode overwrote its password and the previous one is not available: %w", action, r.role, rotation.ErrNotRestorable)
	}
	if prev.Username != "" && prev.Username != r.role {
		return rotation.Permanent(fmt.Errorf("%s: the previous credential is for %q, not %q", action, prev.Username, r.role))
	}
	verifier, err := scramVerifier(r.rnd, prev.Secret)
	if err != nil {
		return fmt.Errorf("%s role %q: %w", action, r.role, err)
	}
	if err := r.setPassword(ctx, r.role, verifier, f, action); err != nil {
		return fmt.Errorf("%s: %w", action, scrub(err, prev.Secret))
	}
	if err := r.login(ctx, r.role, prev.Secret); err != nil {
		return fmt.Errorf("%s: log in as %q with the previous password: %w", action, r.role, scrub(err, prev.Secret))
	}
	r.logger.InfoContext(ctx, "set previous password back", "action", action, "fingerprint", prev.Secret.Fingerprint())
	return nil
}

// fenceSQLState is what the fenced statement raises when a newer lease
// holder has acted on the secret's roles (a class no Postgres error uses).
const fenceSQLState = "RTF01"

// fenceTag quotes the body of the fenced DO block.
const fenceTag = "$rotator_fence$"

// markerRoles are the roles whose comment holds the rotator's marker: the
// pair in blue/green (every action of the secret checks and moves both, so
// one newer action fences the whole secret), the role in single-role mode.
func (r *Rotator) markerRoles() []string {
	if r.mode == policy.ModeSingleRole {
		return []string{r.role}
	}
	return []string{r.blue(), r.green()}
}

// Marker is the comment the rotator keeps on the roles it manages:
// "rotator:<lease token>:<run id>:<action>". Only the token is compared.
func Marker(f rotation.Fence, action string) string {
	return fmt.Sprintf("rotator:%d:%s:%s", f.Token, f.RunID, action)
}

// fenced sends stmt (an ALTER ROLE) as one statement that the server runs
// only when no marker on the secret's roles names a newer lease token than
// f's, and that moves the markers to f in the same transaction. Otherwise
// the server raises fenceSQLState and changes nothing, so a delayed or
// replayed statement of a process that lost its lease is refused by the
// target itself. An advisory lock on the role serializes fenced statements.
// f.Token zero (a caller without a lease) sends stmt unfenced.
func (r *Rotator) fenced(ctx context.Context, c *pgxpool.Conn, f rotation.Fence, action, stmt string) error {
	if f.Token == 0 {
		_, err := c.Exec(ctx, stmt)
		return err
	}
	roles := r.markerRoles()
	lits := make([]string, len(roles))
	for i, n := range roles {
		lits[i] = literal(n)
	}
	marker := Marker(f, action)
	var b strings.Builder
	b.WriteString("DO " + fenceTag + "\nDECLARE m text;\nBEGIN\n")
	fmt.Fprintf(&b, "PERFORM pg_advisory_xact_lock(hashtext('rotator fence'), hashtext(%s));\n", literal(r.role))
	fmt.Fprintf(&b, "FOR m IN SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname IN (%s) LOOP\n", strings.Join(lits, ", "))
	fmt.Fprintf(&b, "IF m ~ '^rotator:[0-9]+:' AND split_part(m, ':', 2)::numeric > %d THEN\n", f.Token)
	fmt.Fprintf(&b, "RAISE EXCEPTION USING ERRCODE = '%s', MESSAGE = 'refused: the role''s marker ' || m || ' names a newer lease than %d', "+
		"HINT = 'another rotator process has acted on this secret since this one took its lease';\n", fenceSQLState, f.Token)
	b.WriteString("END IF;\nEND LOOP;\n")
	fmt.Fprintf(&b, "EXECUTE %s;\n", literal(stmt))
	for _, n := range roles {
		fmt.Fprintf(&b, "EXECUTE %s;\n", literal("COMMENT ON ROLE "+ident(n)+" IS "+literal(marker)))
	}
	b.WriteString("END\n" + fenceTag)
	body := b.String()
	if strings.Count(body, fenceTag) != 2 {
		return rotation.Permanent(fmt.Errorf("a role name contains %s", fenceTag))
	}
	_, err := c.Exec(ctx, body)
	return err
}

// scrubbed is an error whose message has secrets replaced; it still unwraps
// to the original so errors.Is/As work.
type scrubbed struct {
	msg string
	err error
}

func (e *scrubbed) Error() string { return e.msg }
func (e *scrubbed) Unwrap() error { return e.err }

// scrub returns err with any of the secrets in its message replaced by
// REDACTED. Driver messages do not quote passwords; this is the last line
// of defence. Permanent errors stay permanent (errors.As sees through).
func scrub(err error, secrets ...secret.Value) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	changed := false
	for _, s := range secrets {
		if p := s.Reveal(); p != "" && strings.Contains(msg, p) {
			msg = strings.ReplaceAll(msg, p, secret.Redacted)
			changed = true
		}
	}
	if !changed {
		return err
	}
	return &scrubbed{msg: msg, err: err}
}
