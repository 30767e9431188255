package mysql

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	sqldriver "database/sql/driver"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"time"

	driver "github.com/go-sql-driver/mysql"

	"github.com/rotator/rotator/internal/secret"
	"github.com/rotator/rotator/internal/sharedpool"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
)

// Rotator rotates the password of a MariaDB user in blue/green mode (see
// the package documentation). It is safe for concurrent use; Close
// releases its admin connections (those of its own pool; shared pools
// stay open, see WithPools).
type Rotator struct {
	role       string
	host       string
	fenceDB    string
	length     int
	alphabet   string
	connection map[string]string
	adminRef   string // where the admin DSN comes from, for messages
	adminAddr  string
	adminUser  string
	adminPass  string // to scrub from errors

	adminCfg *driver.Config
	loginCfg *driver.Config

	// poolKey names the admin DSN in shared pools (its SHA-256).
	poolKey [32]byte

	rnd    io.Reader
	logger *slog.Logger
	pools  *Pools                        // shared admin pools (WithPools); nil: a pool of its own
	shared *sharedpool.Entry[*adminPool] // the shared pool taken, which Close releases

	mu     sync.Mutex
	pool   *adminPool // the admin pool, from pools or its own, on first use
	closed bool
}

var _ rotation.Rotator = (*Rotator)(nil)

// Option configures a Rotator.
type Option func(*Rotator)

// WithRand sets the random source for passwords (crypto/rand.Reader by
// default). For tests only.
func WithRand(r io.Reader) Option { return func(x *Rotator) { x.rnd = r } }

// WithLogger sets the logger (slog.Default() otherwise).
func WithLogger(l *slog.Logger) Option { return func(x *Rotator) { x.logger = l } }

// Validate checks a spec without any I/O. Defaults (host %, fence
// database rotator, length 32, alphabet A-Za-z0-9) apply to zero fields.
func Validate(spec *policy.MySQLSpec) error {
	if spec == nil {
		return errors.New("mysql: no spec")
	}
	var errs []error
	switch {
	case spec.Role == "":
		errs = append(errs, errors.New("role: required"))
	case len(spec.Role)+len("_green") > 32:
		errs = append(errs, fmt.Errorf("role: %q is too long: %s_green must fit in 32 characters", spec.Role, spec.Role))
	case strings.ContainsAny(spec.Role, "'\\`\x00"):
		errs = append(errs, errors.New("role: contains a quote, backslash or NUL"))
	}
	if strings.ContainsAny(spec.Host, "'\\`\x00") {
		errs = append(errs, errors.New("host: contains a quote, backslash or NUL"))
	}
	if strings.ContainsAny(spec.FenceDatabase, "'\\`\x00. ") {
		errs = append(errs, errors.New("fence_database: must be a plain database name"))
	}
	length, alphabet := passwordShape(spec)
	if length < policy.MinPasswordLength || length > policy.MaxPasswordLength {
		errs = append(errs, fmt.Errorf("password.length: must be between %d and %d, got %d", policy.MinPasswordLength, policy.MaxPasswordLength, length))
	}
	if n := len(distinctBytes(alphabet)); n < policy.MinPasswordAlphabet {
		errs = append(errs, fmt.Errorf("password.alphabet: needs at least %d distinct characters, got %d", policy.MinPasswordAlphabet, n))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("mysql: %w", err)
	}
	return nil
}

func passwordShape(spec *policy.MySQLSpec) (int, string) {
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
func New(spec *policy.MySQLSpec, adminDSN secret.Value, opts ...Option) (*Rotator, error) {
	if err := Validate(spec); err != nil {
		return nil, err
	}
	ref := "the admin DSN"
	if !spec.AdminDSN.IsZero() {
		ref = "admin_dsn (" + spec.AdminDSN.String() + ")"
	}
	if adminDSN.IsZero() {
		return nil, fmt.Errorf("mysql: %s is empty", ref)
	}
	cfg, err := driver.ParseDSN(adminDSN.Reveal())
	if err != nil {
		// The driver's parse errors may quote parts of the DSN: none is shown.
		return nil, rotation.Permanent(fmt.Errorf("mysql: %s does not parse as a go-sql-driver DSN (user:password@tcp(host:3306)/)", ref))
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	// Rows affected counts matched rows: the fence's UPDATE of the same
	// values (a retry) is seen as done.
	cfg.ClientFoundRows = true
	cfg.MultiStatements = false
	login := cfg.Clone()
	login.DBName = "" // the managed users need no access to the admin's database
	length, alphabet := passwordShape(spec)
	r := &Rotator{
		role:       spec.Role,
		host:       spec.Host,
		fenceDB:    spec.FenceDatabase,
		length:     length,
		alphabet:   alphabet,
		connection: maps.Clone(spec.Connection),
		adminRef:   ref,
		adminAddr:  cfg.Addr,
		adminUser:  cfg.User,
		adminPass:  cfg.Passwd,
		adminCfg:   cfg,
		poolKey:    sharedpool.Key(adminDSN.Reveal()),
		loginCfg:   login,
		rnd:        rand.Reader,
		logger:     slog.Default(),
	}
	if r.host == "" {
		r.host = policy.DefaultMySQLHost
	}
	if r.fenceDB == "" {
		r.fenceDB = policy.DefaultMySQLFenceDatabase
	}
	for _, o := range opts {
		o(r)
	}
	r.logger = r.logger.With("rotator", "mysql", "role", r.role, "host", r.host)
	return r, nil
}

// Close releases the admin connections: its own pool's, or, on shared
// pools (WithPools), none (Pools.Close closes those), unless its DSN was
// superseded and this was the pool's last rotator (see Pools). The
// rotator refuses calls after Close.
func (r *Rotator) Close() {
	r.mu.Lock()
	a, e := r.pool, r.shared
	r.pool, r.shared, r.closed = nil, nil, true
	r.mu.Unlock()
	switch {
	case e != nil:
		r.pools.set.Release(e)
	case a != nil:
		a.close()
	}
}

// admin returns the admin connection pool: the shared one of the admin
// DSN (WithPools), else one of its own, created on first use. The first
// call that gets a pool asks the server what it is (checkServer), once
// per pool: a server that is not a supported MariaDB is refused there,
// before any other statement, with a permanent error. A check that fails
// for another reason (the server is down) runs again on the next call.
// Concurrent first calls wait for one check; no lock is held across it.
func (r *Rotator) admin(ctx context.Context) (*sql.DB, error) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, rotation.Permanent(errClosed)
	}
	if r.pool == nil {
		var (
			a   *adminPool
			err error
		)
		if r.pools != nil {
			var e *sharedpool.Entry[*adminPool]
			if e, err = r.pools.get(r.poolKey, r.adminCfg); err == nil {
				a, r.shared = e.Pool, e
			}
		} else {
			a, err = newAdminPool(r.adminCfg, ownMaxConns)
		}
		if err != nil {
			r.mu.Unlock()
			return nil, rotation.Permanent(fmt.Errorf("mysql: %s: %w", r.adminRef, r.scrub(err)))
		}
		r.pool = a
	}
	a := r.pool
	r.mu.Unlock()

	err := a.ready(ctx, r.adminAddr, r.checkServer)
	r.mu.Lock()
	closed := r.closed
	r.mu.Unlock()
	if closed {
		// Close came during the check: the rotator is closed.
		return nil, rotation.Permanent(errClosed)
	}
	if err != nil {
		return nil, err
	}
	return a.db, nil
}

// MariaDB error numbers rotator tells apart.
const (
	erAccessDenied     = 1045 // bad user or password
	erDBAccessDenied   = 1044
	erSpecificAccess   = 1227 // needs a privilege
	erTableAccess      = 1142
	erCannotUser       = 1396 // ALTER/CREATE USER failed (no such user)
	erAccountLocked    = 4151 // MariaDB: "this account is locked"
	erUnknownThread    = 1094
	erKillDenied       = 1095 // KILL of another user's thread without CONNECTION ADMIN
	fenceLockWaitSecs  = 30
	adminPrivilegeHint = "see deploy/mysql/grants.sql for what the admin account needs"
)

// killWait bounds how long retire waits for the connections it killed
// to leave PROCESSLIST.
const killWait = 5 * time.Second

// sqlError wraps err with action and marks what retrying cannot fix as
// permanent.
func (r *Rotator) sqlError(action string, err error) error {
	err = r.scrub(err)
	var me *driver.MySQLError
	if errors.As(err, &me) {
		switch me.Number {
		case erSpecificAccess, erTableAccess, erDBAccessDenied:
			return rotation.Permanent(fmt.Errorf("%s: %w (%s)", action, err, adminPrivilegeHint))
		case erAccessDenied:
			return rotation.Permanent(fmt.Errorf("%s: connect to %s as admin %q: %w: check the DSN that %s holds", action, r.adminAddr, r.adminUser, err, r.adminRef))
		case erCannotUser:
			return rotation.Permanent(fmt.Errorf("%s: %w", action, err))
		}
	}
	return fmt.Errorf("%s: %w", action, err)
}

// quote quotes s as a string literal (the names are validated; this is
// the second line).
func quote(s string) string {
	s = strings.ReplaceAll(s, `\`, `\\`)
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// account is 'user'@'host'.
func (r *Rotator) account(user string) string { return quote(user) + "@" + quote(r.host) }

func (r *Rotator) blue() string  { return r.role + "_blue" }
func (r *Rotator) green() string { return r.role + "_green" }

func (r *Rotator) inPair(name string) bool { return name == r.blue() || name == r.green() }

type userState struct{ exists, locked bool }

// userStates reads whether the pair's users exist and are locked
// (mysql.global_priv, MariaDB 10.4+).
func (r *Rotator) userStates(ctx context.Context, db *sql.DB) (map[string]userState, error) {
	rows, err := db.QueryContext(ctx, `SELECT User, COALESCE(JSON_VALUE(Priv, '$.account_locked'), '0') IN ('1', 'true')
		FROM mysql.global_priv WHERE Host = ? AND User IN (?, ?)`, r.host, r.blue(), r.green())
	if err != nil {
		return nil, r.sqlError("read users of "+r.role, err)
	}
	defer rows.Close()
	out := map[string]userState{}
	for rows.Next() {
		var u string
		var locked bool
		if err := rows.Scan(&u, &locked); err != nil {
			return nil, r.sqlError("read users of "+r.role, err)
		}
		out[u] = userState{exists: true, locked: locked}
	}
	if err := rows.Err(); err != nil {
		return nil, r.sqlError("read users of "+r.role, err)
	}
	return out, nil
}

// current finds the user clients use now: the one the engine knows, else
// the one that is not locked; "" when both are locked (before the first
// rotation).
func (r *Rotator) current(known string, st map[string]userState) (string, error) {
	for _, u := range []string{r.blue(), r.green()} {
		if !st[u].exists {
			return "", rotation.Permanent(fmt.Errorf("user %s does not exist: run `rotator init --secret ID` to create the blue/green pair of role %q", r.account(u), r.role))
		}
	}
	if known != "" {
		if !r.inPair(known) {
			return "", rotation.Permanent(fmt.Errorf("current credential %q is not %s or %s", known, r.blue(), r.green()))
		}
		return known, nil
	}
	b, g := !st[r.blue()].locked, !st[r.green()].locked
	switch {
	case b && g:
		return "", rotation.Permanent(fmt.Errorf("both %s and %s are unlocked and the current one is not recorded: "+
			"find the one clients use (information_schema.PROCESSLIST), ALTER USER the other ACCOUNT LOCK, and run again", r.blue(), r.green()))
	case b:
		return r.blue(), nil
	case g:
		return r.green(), nil
	}
	return "", nil
}

func (r *Rotator) standby(current string) string {
	if current == r.blue() {
		return r.green()
	}
	return r.blue()
}

// ErrStandbyInUse: the user blue/green would re-key is unlocked and has
// client connections.
var ErrStandbyInUse = errors.New("standby in use")

// Generate sets a fresh password on the standby user and unlocks it, then
// logs in with it. The password reaches the server only as its
// mysql_native_password hash. Calling it again re-keys the same user.
func (r *Rotator) Generate(ctx context.Context, req rotation.GenerateRequest) (rotation.GenerateResponse, error) {
	db, err := r.admin(ctx)
	if err != nil {
		return rotation.GenerateResponse{}, err
	}
	st, err := r.userStates(ctx, db)
	if err != nil {
		return rotation.GenerateResponse{}, err
	}
	cur, err := r.current(req.Current.Username, st)
	if err != nil {
		return rotation.GenerateResponse{}, err
	}
	target := r.standby(cur)
	// What the target shows (DESIGN.md, rule 1): an unlocked standby with
	// connections is in use; re-keying it would lock those clients out.
	if !st[target].locked {
		n, _, err := r.sessions(ctx, db, target)
		if err != nil {
			return rotation.GenerateResponse{}, err
		}
		if n > 0 {
			return rotation.GenerateResponse{}, fmt.Errorf("%w: the standby user %s is unlocked and has %d connection(s): rotator does not re-key a user clients use; "+
				"find them (SELECT * FROM information_schema.PROCESSLIST WHERE USER = '%s'), move them to %q, then retry", ErrStandbyInUse, r.account(target), n, target, cur)
		}
	}
	pw, err := generatePassword(r.rnd, r.length, r.alphabet)
	if err != nil {
		return rotation.GenerateResponse{}, fmt.Errorf("generate password: %w", err)
	}
	hash := NativeHash(pw)
	stmt := "ALTER USER " + r.account(target) + " IDENTIFIED BY PASSWORD " + quote(hash) + " ACCOUNT UNLOCK"
	if err := r.fenced(ctx, db, req.Fence, "rekey", stmt); err != nil {
		return rotation.GenerateResponse{}, r.wrap(fmt.Sprintf("re-key user %s", r.account(target)), err, pw, hash)
	}
	if err := r.login(ctx, target, pw); err != nil {
		lerr := fmt.Errorf("log in as %q with its new password: %w", target, scrub(err, pw.Reveal(), hash))
		// The standby now has a password nobody holds: lock it again.
		if derr := r.setLocked(context.WithoutCancel(ctx), target, true, "undo the re-key of", req.Fence); derr != nil {
			return rotation.GenerateResponse{}, fmt.Errorf("%w; and locking %q again failed: %v", lerr, target, scrub(derr, pw.Reveal(), hash))
		}
		return rotation.GenerateResponse{}, lerr
	}
	r.logger.InfoContext(ctx, "re-keyed user", "secret_id", req.SecretID, "run_id", req.RunID,
		"target_user", target, "fingerprint", pw.Fingerprint())
	return rotation.GenerateResponse{
		Credential: rotation.Credential{Username: target, Secret: pw, Field: "password", Extra: maps.Clone(r.connection)},
		Replaces:   rotation.CredentialMeta{Username: cur},
	}, nil
}

// sessions counts the connections of user other than this one, and says
// where they come from.
func (r *Rotator) sessions(ctx context.Context, db *sql.DB, user string) (int, []string, error) {
	rows, err := db.QueryContext(ctx, `SELECT SUBSTRING_INDEX(HOST, ':', 1), COUNT(*) FROM information_schema.PROCESSLIST
		WHERE USER = ? AND ID <> CONNECTION_ID() GROUP BY 1 ORDER BY 1`, user)
	if err != nil {
		return 0, nil, r.sqlError(fmt.Sprintf("count connections of %q", user), err)
	}
	defer rows.Close()
	total := 0
	var from []string
	for rows.Next() {
		var h string
		var n int
		if err := rows.Scan(&h, &n); err != nil {
			return 0, nil, r.sqlError(fmt.Sprintf("count connections of %q", user), err)
		}
		total += n
		from = append(from, h)
	}
	if err := rows.Err(); err != nil {
		return 0, nil, r.sqlError(fmt.Sprintf("count connections of %q", user), err)
	}
	return total, from, nil
}

// login connects as user with password to the admin DSN's address (and
// TLS settings) and runs SELECT 1.
func (r *Rotator) login(ctx context.Context, user string, password secret.Value) error {
	if user == "" {
		return rotation.Permanent(errors.New("credential has no username"))
	}
	cfg := r.loginCfg.Clone()
	cfg.User, cfg.Passwd = user, password.Reveal()
	c, err := driver.NewConnector(cfg)
	if err != nil {
		return err
	}
	db := sql.OpenDB(c)
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	var id int64
	err = conn.QueryRowContext(ctx, "SELECT CONNECTION_ID()").Scan(&id)
	conn.Close()
	db.Close()
	if err != nil {
		return err
	}
	// The server drops a closed connection from PROCESSLIST a moment
	// later. Until it does, the login test would count as a client of
	// user: a retried Generate would take the standby for in use, verify
	// would wait on rotator's own connection. Wait it out, or end it.
	return r.forget(ctx, id, "the login test's connection")
}

// forget waits until connection id (what, for messages) has left
// PROCESSLIST, and kills it when it lingers.
func (r *Rotator) forget(ctx context.Context, id int64, what string) error {
	db, err := r.admin(ctx)
	if err != nil {
		return err
	}
	// A wait whose context ends says what it waited for.
	ended := func() error {
		return fmt.Errorf("wait for %s (connection %d) to leave information_schema.PROCESSLIST at %s: %w", what, id, r.adminAddr, ctx.Err())
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		var n int
		if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = ?`, id).Scan(&n); err != nil {
			if ctx.Err() != nil {
				return ended()
			}
			return r.sqlError("look up "+what, err)
		}
		if n == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			if _, err := db.ExecContext(ctx, fmt.Sprintf("KILL CONNECTION %d", id)); err != nil {
				var me *driver.MySQLError
				if errors.As(err, &me) && me.Number == erUnknownThread {
					return nil
				}
				if errors.As(err, &me) && (me.Number == erKillDenied || me.Number == erSpecificAccess) {
					// No CONNECTION ADMIN (it is needed for
					// terminate_sessions only). The login worked; until
					// the server drops the connection it counts as a
					// client of user, which only makes a later step
					// wait or refuse.
					r.logger.WarnContext(ctx, what+" lingers and the admin account may not end it (CONNECTION ADMIN)",
						"connection_id", id)
					return nil
				}
				return r.sqlError(fmt.Sprintf("end %s %d", what, id), err)
			}
			deadline = time.Now().Add(2 * time.Second)
		}
		select {
		case <-ctx.Done():
			return ended()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// Test logs in with the credential and runs SELECT 1.
func (r *Rotator) Test(ctx context.Context, req rotation.TestRequest) error {
	c := req.Credential
	// The server check first (login ends with the admin pool anyway): a
	// server that is not a supported MariaDB is reported as such, not as
	// a failed login.
	if _, err := r.admin(ctx); err != nil {
		return err
	}
	if err := r.login(ctx, c.Username, c.Secret); err != nil {
		return fmt.Errorf("test credential %s: %w", c.Meta(), scrub(err, c.Secret.Reveal()))
	}
	return nil
}

// Clients counts the connections of the old user
// (information_schema.PROCESSLIST; the admin account needs PROCESS to see
// other users' connections).
func (r *Rotator) Clients(ctx context.Context, req rotation.ClientsRequest) (rotation.ClientsResponse, error) {
	old := req.Old.Username
	if old == "" {
		return rotation.ClientsResponse{}, nil
	}
	db, err := r.admin(ctx)
	if err != nil {
		return rotation.ClientsResponse{}, err
	}
	n, from, err := r.sessions(ctx, db, old)
	if err != nil {
		return rotation.ClientsResponse{}, err
	}
	resp := rotation.ClientsResponse{Count: n}
	if n > 0 {
		noun := "connections"
		if n == 1 {
			noun = "connection"
		}
		resp.Detail = fmt.Sprintf("%d %s of %s (from %s)", n, noun, old, strings.Join(from, ", "))
	}
	return resp, nil
}

// Retire locks the old user (ALTER USER ... ACCOUNT LOCK) and kills its
// connections when asked; open connections survive the lock otherwise.
// A user already locked or gone is not an error.
func (r *Rotator) Retire(ctx context.Context, req rotation.RetireRequest) error {
	old := req.Old.Username
	switch {
	case old == "":
		return rotation.Permanent(errors.New("retire: no old user named"))
	case old == req.New.Username:
		return rotation.Permanent(fmt.Errorf("retire: refusing to lock %q: it is the new credential", old))
	case !r.inPair(old):
		return rotation.Permanent(fmt.Errorf("retire: refusing to lock %q: it is not %s or %s", old, r.blue(), r.green()))
	}
	if err := r.setLocked(ctx, old, true, "retire", req.Fence); err != nil {
		return err
	}
	if req.Terminate {
		db, err := r.admin(ctx)
		if err != nil {
			return err
		}
		if err := r.kill(ctx, db, old); err != nil {
			return err
		}
	}
	r.logger.InfoContext(ctx, "retired user", "secret_id", req.SecretID, "old_user", old)
	return nil
}

// kill ends the connections of user.
func (r *Rotator) kill(ctx context.Context, db *sql.DB, user string) error {
	rows, err := db.QueryContext(ctx, `SELECT ID FROM information_schema.PROCESSLIST WHERE USER = ? AND ID <> CONNECTION_ID()`, user)
	if err != nil {
		return r.sqlError(fmt.Sprintf("list connections of %q", user), err)
	}
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return r.sqlError(fmt.Sprintf("list connections of %q", user), err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	for _, id := range ids {
		if _, err := db.ExecContext(ctx, fmt.Sprintf("KILL CONNECTION %d", id)); err != nil {
			var me *driver.MySQLError
			if errors.As(err, &me) && me.Number == erUnknownThread {
				continue // ended meanwhile
			}
			return r.sqlError(fmt.Sprintf("kill connection %d of %q (grant CONNECTION ADMIN, or set terminate_sessions: false; the user is already locked)", id, user), err)
		}
	}
	// A killed connection stays in PROCESSLIST until its thread notices:
	// counted as a client of user meanwhile. Retire returns once they are
	// gone, or after killWait (a thread busy in a statement it cannot
	// leave at once): the user is locked and they were killed, which is
	// what retire does; a later count may still see them.
	wctx, cancel := context.WithTimeout(ctx, killWait)
	defer cancel()
	for _, id := range ids {
		if err := r.forget(wctx, id, fmt.Sprintf("killed connection of %q", user)); err != nil {
			if wctx.Err() != nil && ctx.Err() == nil {
				r.logger.WarnContext(ctx, "killed connections are still listed", "user", user, "wait", killWait.String())
				break
			}
			return err
		}
	}
	if len(ids) > 0 {
		r.logger.InfoContext(ctx, "killed connections", "user", user, "connections", len(ids))
	}
	return nil
}

// Restore unlocks a retired user (its password is kept while locked).
func (r *Rotator) Restore(ctx context.Context, req rotation.RestoreRequest) error {
	old := req.Old.Username
	if !r.inPair(old) {
		return rotation.Permanent(fmt.Errorf("restore: refusing to unlock %q: it is not %s or %s", old, r.blue(), r.green()))
	}
	db, err := r.admin(ctx)
	if err != nil {
		return err
	}
	st, err := r.userStates(ctx, db)
	if err != nil {
		return err
	}
	if !st[old].exists {
		return fmt.Errorf("restore user %s: it no longer exists: %w", r.account(old), rotation.ErrNotRestorable)
	}
	if err := r.setLocked(ctx, old, false, "restore", req.Fence); err != nil {
		return err
	}
	r.logger.InfoContext(ctx, "restored user", "secret_id", req.SecretID, "old_user", old)
	return nil
}

// Discard locks the unpublished standby of a failed run, unless it is the
// current user.
func (r *Rotator) Discard(ctx context.Context, req rotation.DiscardRequest) error {
	n := req.New.Username
	switch {
	case n == "" || n == req.Current.Username:
		return nil
	case !r.inPair(n):
		return rotation.Permanent(fmt.Errorf("discard: refusing to lock %q: it is not %s or %s", n, r.blue(), r.green()))
	}
	if err := r.setLocked(ctx, n, true, "discard", req.Fence); err != nil {
		return err
	}
	r.logger.InfoContext(ctx, "discarded unpublished credential", "secret_id", req.SecretID, "new_user", n)
	return nil
}

// setLocked locks (or unlocks) user unless it is so already. Fenced
// (f.Token set), it always sends the fenced statement, so that a refusal
// is seen and the marker moves. A user that does not exist is left alone.
func (r *Rotator) setLocked(ctx context.Context, user string, lock bool, action string, f rotation.Fence) error {
	db, err := r.admin(ctx)
	if err != nil {
		return err
	}
	st, err := r.userStates(ctx, db)
	if err != nil {
		return err
	}
	if !st[user].exists {
		r.logger.WarnContext(ctx, "user does not exist", "action", action, "user", user)
		return nil
	}
	if st[user].locked == lock && f.Token == 0 {
		return nil
	}
	opt := "ACCOUNT UNLOCK"
	if lock {
		opt = "ACCOUNT LOCK"
	}
	if err := r.fenced(ctx, db, f, action, "ALTER USER "+r.account(user)+" "+opt); err != nil {
		return r.wrap(fmt.Sprintf("%s user %s (%s)", action, r.account(user), opt), err)
	}
	return nil
}

// wrap is sqlError for the result of fenced: a fence refusal stays as it is.
func (r *Rotator) wrap(action string, err error, secrets ...any) error {
	var s []string
	for _, x := range secrets {
		switch v := x.(type) {
		case secret.Value:
			s = append(s, v.Reveal())
		case string:
			s = append(s, v)
		}
	}
	err = scrub(err, s...)
	if errors.Is(err, rotation.ErrFenced) {
		return rotation.Permanent(fmt.Errorf("%s: %w", action, err))
	}
	return r.sqlError(action, err)
}

// FenceTable is the table, in the fence database, that holds the
// rotator's marker of each secret: the highest lease token that acted.
const FenceTable = "rotator_fence"

func (r *Rotator) fenceTable() string { return "`" + r.fenceDB + "`.`" + FenceTable + "`" }

// fenceKey names the secret's row: role@host.
func (r *Rotator) fenceKey() string { return r.role + "@" + r.host }

// fenceLock is the name of the server-wide lock that serializes the
// secret's fenced actions (at most 64 characters).
func (r *Rotator) fenceLock() string {
	h := sha256.Sum256([]byte(r.fenceKey()))
	return "rotator_fence_" + hex.EncodeToString(h[:16])
}

// createFenceTable is the fence table's definition.
func (r *Rotator) createFenceTable() string {
	return "CREATE TABLE IF NOT EXISTS " + r.fenceTable() + ` (
		secret_key VARCHAR(255) NOT NULL PRIMARY KEY,
		token BIGINT NOT NULL,
		run_id VARCHAR(255) NOT NULL,
		action VARCHAR(64) NOT NULL,
		updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6)
	) ENGINE=InnoDB`
}

// fenced runs stmt (an ALTER USER) only while no newer lease holder has
// acted on the secret, as the target itself sees it. ALTER USER cannot
// run inside a transaction (it commits implicitly, before it runs), so
// the check and the statement are held together by a named lock
// (GET_LOCK), which belongs to the session and survives commits:
//
//  1. GET_LOCK(secret's lock): every fenced action of the secret, from
//     any process, runs one at a time;
//  2. in one transaction: SELECT the marker row FOR UPDATE, refuse
//     (ErrFenced) when its token is above f.Token, else UPDATE it to
//     f.Token and COMMIT: the marker moves before the change;
//  3. ALTER USER on the same session, still under the named lock;
//  4. RELEASE_LOCK.
//
// A newer holder cannot act between 2 and 3 (it waits at 1), and after 3
// it finds the marker at least at f.Token. A process that lost its lease
// and whose statements arrive late checks at 2 against the newer token and
// is refused. A session that dies drops its lock and its later statements
// with it. The marker moving without the ALTER (a crash between 2 and 3)
// only fences older tokens, which the newer holder's lease already did.
// f.Token zero (a caller without a lease) sends stmt unfenced.
func (r *Rotator) fenced(ctx context.Context, db *sql.DB, f rotation.Fence, action, stmt string) error {
	if f.Token == 0 {
		_, err := db.ExecContext(ctx, stmt)
		return err
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	var got sql.NullInt64
	if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK(?, ?)", r.fenceLock(), fenceLockWaitSecs).Scan(&got); err != nil {
		// The lock may have been granted with the answer lost: the
		// session goes, and the lock with it.
		discard(conn)
		return fmt.Errorf("take the fence lock %s: %w", r.fenceLock(), err)
	}
	if !got.Valid || got.Int64 != 1 {
		return fmt.Errorf("take the fence lock %s: another action on %s holds it since more than %ds", r.fenceLock(), r.fenceKey(), fenceLockWaitSecs)
	}
	defer func() {
		// The release runs even when ctx has ended (the action was
		// cancelled), but not forever: an answer that never comes
		// closes the session, which frees the lock on the server.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
		defer cancel()
		releaseLock(rctx, conn, r.fenceLock())
	}()
	if _, err := conn.ExecContext(ctx, r.createFenceTable()); err != nil {
		return fmt.Errorf("create the fence table %s: %w", r.fenceTable(), err)
	}
	if _, err := conn.ExecContext(ctx, "INSERT IGNORE INTO "+r.fenceTable()+" (secret_key, token, run_id, action) VALUES (?, 0, '', 'none')", r.fenceKey()); err != nil {
		return fmt.Errorf("create the fence row of %s: %w", r.fenceKey(), err)
	}
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	var (
		token        int64
		run, action0 string
	)
	if err := tx.QueryRowContext(ctx, "SELECT token, run_id, action FROM "+r.fenceTable()+" WHERE secret_key = ? FOR UPDATE", r.fenceKey()).
		Scan(&token, &run, &action0); err != nil {
		return fmt.Errorf("read the fence row of %s: %w", r.fenceKey(), err)
	}
	if token > f.Token {
		return fmt.Errorf("%w: %s marks %s with lease token %d (run %s, %s), newer than this process's %d: another rotator process has acted on this secret since this one took its lease",
			rotation.ErrFenced, r.fenceTable(), r.fenceKey(), token, run, action0, f.Token)
	}
	res, err := tx.ExecContext(ctx, "UPDATE "+r.fenceTable()+" SET token = ?, run_id = ?, action = ? WHERE secret_key = ? AND token <= ?",
		f.Token, f.RunID, action, r.fenceKey(), f.Token)
	if err != nil {
		return fmt.Errorf("move the fence row of %s: %w", r.fenceKey(), err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return fmt.Errorf("move the fence row of %s: %d rows matched (%v)", r.fenceKey(), n, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit the fence row of %s: %w", r.fenceKey(), err)
	}
	_, err = conn.ExecContext(ctx, stmt)
	return err
}

// releaseTimeout bounds the fence's RELEASE_LOCK, which runs after the
// action on a context the action's cancellation does not end: a release
// whose answer does not come in time closes the session (the server
// then frees the lock) instead of holding the action, and a shared
// pool's connection, until TCP gives up.
const releaseTimeout = 5 * time.Second

// releaseLock releases the named lock that conn's session holds. The
// connection goes back to the pool, to serve other secrets, only when
// the server confirms the release (RELEASE_LOCK returns 1); otherwise
// (an error, NULL or 0, ctx ending first) it is closed, and the server
// drops the session's locks with it: a pooled connection never carries a
// lock to the next caller.
func releaseLock(ctx context.Context, conn *sql.Conn, name string) {
	var n sql.NullInt64
	if err := conn.QueryRowContext(ctx, "SELECT RELEASE_LOCK(?)", name).Scan(&n); err != nil || !n.Valid || n.Int64 != 1 {
		discard(conn)
	}
}

// discard closes conn's session instead of returning it to the pool.
func discard(conn *sql.Conn) {
	_ = conn.Raw(func(any) error { return sqldriver.ErrBadConn })
}

// scrubbed is an error whose message has secrets replaced; it still
// unwraps to the original.
type scrubbed struct {
	msg string
	err error
}

func (e *scrubbed) Error() string { return e.msg }
func (e *scrubbed) Unwrap() error { return e.err }

// scrub replaces any of secrets in err's message by REDACTED.
func scrub(err error, secrets ...string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	changed := false
	for _, s := range secrets {
		if s != "" && strings.Contains(msg, s) {
			msg = strings.ReplaceAll(msg, s, secret.Redacted)
			changed = true
		}
	}
	if !changed {
		return err
	}
	return &scrubbed{msg: msg, err: err}
}

func (r *Rotator) scrub(err error) error { return scrub(err, r.adminPass) }

// DSNPassword returns the password in a go-sql-driver DSN (zero when the
// DSN does not parse or has none), for redaction.
func DSNPassword(dsn secret.Value) secret.Value {
	cfg, err := driver.ParseDSN(dsn.Reveal())
	if err != nil {
		return secret.Value{}
	}
	return secret.New(cfg.Passwd)
}
