package state

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rotator/rotator/internal/dsn"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// Errors callers test with errors.Is.
var (
	ErrNotFound      = errors.New("not found")
	ErrLeaseHeld     = errors.New("lease held by another process")
	ErrLeaseLost     = errors.New("lease lost (taken over after it expired)")
	ErrSchemaOld     = errors.New("state schema is older than this binary")
	ErrSchemaNew     = errors.New("state schema is newer than this binary")
	ErrRunActive     = errors.New("secret already has an unfinished run")
	errNoMigrationOK = errors.New("no migrations embedded")
)

// DB is the state database.
type DB struct {
	pool *pgxpool.Pool
	now  func() time.Time
	// where is the redacted address, for error messages.
	where string
}

// Option configures Open.
type Option func(*DB)

// WithClock injects the clock used for lease expiry and timestamps.
func WithClock(now func() time.Time) Option { return func(db *DB) { db.now = now } }

// Redact names dsn for messages without its password (internal/dsn):
// user, host, port and database when it parses, the scheme alone when it
// does not.
func Redact(s string) string { return dsn.Describe(s) }

// Open connects to the state database and checks that it answers. The
// error names the server (never the password) and what to check.
func Open(ctx context.Context, connString string, opts ...Option) (*DB, error) {
	if connString == "" {
		return nil, errors.New("no state database: set DATABASE_URL (or --database-connString) to a Postgres connection string, e.g. postgres://rotator@db:5432/rotator")
	}
	if err := dsn.Check(connString); err != nil {
		return nil, fmt.Errorf("state database URL %s: %w (check DATABASE_URL)", Redact(connString), err)
	}
	cfg, err := pgxpool.ParseConfig(connString)
	if err != nil {
		return nil, fmt.Errorf("state database URL %s is not valid: %v", Redact(connString), redactErr(err, connString))
	}
	cfg.MaxConns = 8
	cfg.ConnConfig.ConnectTimeout = 10 * time.Second
	db := &DB{now: time.Now, where: fmt.Sprintf("%s:%d/%s", cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database)}
	for _, o := range opts {
		o(db)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("state database %s: %v", db.where, redactErr(err, connString))
	}
	pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("state database %s is unreachable: %v (check DATABASE_URL, that the server runs and accepts this user)", db.where, redactErr(err, connString))
	}
	db.pool = pool
	return db, nil
}

// redactErr removes a DSN's password, in every form, from an error text
// (internal/dsn).
func redactErr(err error, s string) string { return dsn.Error(err, s).Error() }

// Where names the database for messages (host:port/db).
func (db *DB) Where() string { return db.where }

// Close closes the pool.
func (db *DB) Close() { db.pool.Close() }

// Pool exposes the connection pool (tests, health checks).
func (db *DB) Pool() *pgxpool.Pool { return db.pool }

// Ping checks the database answers (readiness).
func (db *DB) Ping(ctx context.Context) error { return db.pool.Ping(ctx) }

type migration struct {
	version int
	name    string
	sql     string
}

func migrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFS, "migrations")
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, e := range entries {
		n, err := strconv.Atoi(strings.SplitN(e.Name(), "_", 2)[0])
		if err != nil {
			return nil, fmt.Errorf("migration %s: name must start with a number", e.Name())
		}
		b, err := migrationFS.ReadFile("migrations/" + e.Name())
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: n, name: e.Name(), sql: string(b)})
	}
	if len(out) == 0 {
		return nil, errNoMigrationOK
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	return out, nil
}

// LatestVersion is the schema version this binary knows.
func LatestVersion() int {
	m, err := migrations()
	if err != nil {
		return 0
	}
	return m[len(m)-1].version
}

const migrationLock = 0x726f7461746f72 // "rotator"

// Migrate applies the embedded migrations that are missing, each in its own
// transaction together with its version row. It is idempotent, safe to run
// from several processes at once (an advisory lock serialises them), and
// refuses to touch a schema newer than this binary.
func (db *DB) Migrate(ctx context.Context) (applied []int, err error) {
	ms, err := migrations()
	if err != nil {
		return nil, err
	}
	conn, err := db.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("state database %s: %w", db.where, err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1)`, migrationLock); err != nil {
		return nil, fmt.Errorf("migrate: lock: %w", err)
	}
	defer func() { _, _ = conn.Exec(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, migrationLock) }()
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS rotator_schema_migrations (
		version int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return nil, fmt.Errorf("migrate: %w", permissionHint(err))
	}
	current, err := schemaVersion(ctx, conn.Conn())
	if err != nil {
		return nil, err
	}
	latest := ms[len(ms)-1].version
	if current > latest {
		return nil, fmt.Errorf("%w: the database is at version %d, this binary knows up to %d; upgrade rotator before migrating", ErrSchemaNew, current, latest)
	}
	for _, m := range ms {
		if m.version <= current {
			continue
		}
		err := pgx.BeginFunc(ctx, conn.Conn(), func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO rotator_schema_migrations (version, name) VALUES ($1, $2)`, m.version, m.name)
			return err
		})
		if err != nil {
			return applied, fmt.Errorf("migrate: apply %s: %w", m.name, permissionHint(err))
		}
		applied = append(applied, m.version)
	}
	return applied, nil
}

func permissionHint(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42501" {
		return fmt.Errorf("%w (the state database user needs CREATE on the database's schema)", err)
	}
	return err
}

func schemaVersion(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}) (int, error) {
	var v int
	err := q.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM rotator_schema_migrations`).Scan(&v)
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42P01" { // undefined_table
			return 0, nil
		}
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	return v, nil
}

// CheckSchema verifies that the schema is exactly the version this binary
// knows; commands other than migrate call it first.
func (db *DB) CheckSchema(ctx context.Context) error {
	v, err := schemaVersion(ctx, db.pool)
	if err != nil {
		return fmt.Errorf("state database %s: %w", db.where, err)
	}
	latest := LatestVersion()
	switch {
	case v < latest:
		return fmt.Errorf("%w: state database %s is at schema version %d, this binary needs %d: run `rotator migrate`", ErrSchemaOld, db.where, v, latest)
	case v > latest:
		return fmt.Errorf("%w: state database %s is at schema version %d, this binary knows up to %d: upgrade rotator", ErrSchemaNew, db.where, v, latest)
	}
	return nil
}
