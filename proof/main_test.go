package proof_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/clitest"
	"github.com/rotator/rotator/internal/pgtest"
)

// binary is the rotator CLI, built once, run as a process like a CronJob.
var binary string

// full selects the sizes docs/proof.md reports (PROOF_FULL=1).
var full = os.Getenv("PROOF_FULL") != ""

func TestMain(m *testing.M) { os.Exit(clitest.Main(m, "../cmd/rotator", &binary)) }

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// target is a database with a group role that has LOGIN and a password, as
// an application has before rotator manages it. Role names are unique per
// test: roles are cluster-wide.
type target struct {
	t       *testing.T
	dsn     string // superuser DSN of the target database
	role    string
	initial string // the role's password before rotator
}

func newTarget(t *testing.T, prefix string) *target {
	t.Helper()
	tg := &target{t: t, dsn: pgtest.NewDatabase(t), role: prefix + "_" + randHex(3), initial: "initial-" + randHex(12)}
	tg.exec(`CREATE ROLE ` + tg.role + ` LOGIN PASSWORD '` + tg.initial + `'`)
	tg.exec(`CREATE TABLE orders (id int PRIMARY KEY)`)
	tg.exec(`ALTER TABLE orders OWNER TO ` + tg.role)
	return tg
}

func (tg *target) exec(sql string) {
	tg.t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, tg.dsn)
	require.NoError(tg.t, err)
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	require.NoError(tg.t, err, sql)
}

// login connects as user/password over TCP (scram-sha-256) and queries.
func (tg *target) login(user, password string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pgtest.UserDSN(tg.dsn, user, password))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	var n int
	return conn.QueryRow(ctx, `SELECT count(*) FROM orders`).Scan(&n)
}

// loginRoles returns the roles of the pair (and the group role) that can
// log in.
func (tg *target) loginRoles() []string {
	tg.t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, tg.dsn)
	require.NoError(tg.t, err)
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT rolname FROM pg_roles WHERE rolcanlogin AND rolname = ANY($1) ORDER BY 1`,
		[]string{tg.role, tg.role + "_blue", tg.role + "_green"})
	require.NoError(tg.t, err)
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(tg.t, err)
	return names
}

// proxy is a TCP forwarder whose port can be closed and opened again: an
// outage of whatever is behind it, as clients see one.
type proxy struct {
	to   string
	addr string
	mu   sync.Mutex
	ln   net.Listener
	conn map[net.Conn]struct{}
}

func newProxy(t *testing.T, to string) *proxy {
	t.Helper()
	p := &proxy{to: to, conn: map[net.Conn]struct{}{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p.addr = ln.Addr().String()
	p.serve(ln)
	t.Cleanup(p.Down)
	return p
}

func (p *proxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.pipe(c)
		}
	}()
}

func (p *proxy) pipe(c net.Conn) {
	u, err := net.Dial("tcp", p.to)
	if err != nil {
		_ = c.Close()
		return
	}
	p.mu.Lock()
	if p.ln == nil {
		p.mu.Unlock()
		_ = c.Close()
		_ = u.Close()
		return
	}
	p.conn[c], p.conn[u] = struct{}{}, struct{}{}
	p.mu.Unlock()
	done := func() {
		_ = c.Close()
		_ = u.Close()
		p.mu.Lock()
		delete(p.conn, c)
		delete(p.conn, u)
		p.mu.Unlock()
	}
	go func() { _, _ = io.Copy(u, c); done() }()
	_, _ = io.Copy(c, u)
	done()
}

// Down closes the port and every connection through it.
func (p *proxy) Down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		_ = p.ln.Close()
		p.ln = nil
	}
	for c := range p.conn {
		_ = c.Close()
	}
}

// Up opens the port again.
func (p *proxy) Up(t *testing.T) {
	t.Helper()
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ {
		if ln, err = net.Listen("tcp", p.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	require.NoError(t, err)
	p.serve(ln)
}

// newStateDSN is a fresh database for rotator's own state.
func newStateDSN(t *testing.T) string {
	t.Helper()
	return pgtest.NewDatabase(t)
}
