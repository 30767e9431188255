package bench_test

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/pgtest"
	"github.com/rotator/rotator/internal/seal"
	"github.com/rotator/rotator/internal/secret"
	"github.com/rotator/rotator/policy"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/rotators/postgres"
	"github.com/rotator/rotator/state"
	"github.com/rotator/rotator/stores/files"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// Concurrency is the bound on rotations in flight, for engine and floor.
const concurrency = 8

// world is a target database holding n blue/green pairs per side (engine
// and floor get pairs of their own): group role <p>NNNN (NOLOGIN), its
// members <p>NNNN_blue (LOGIN, current) and <p>NNNN_green (NOLOGIN).
type world struct {
	targetDSN string
	stateDSN  string
	dir       string
	prefix    string
}

// newWorld makes the pairs of the sides named (default: "e" for the
// engine and "f" for the floor).
func newWorld(tb testing.TB, n int, sides ...string) *world {
	tb.Helper()
	if len(sides) == 0 {
		sides = []string{"e", "f"}
	}
	w := &world{targetDSN: pgtest.NewDatabase(tb), stateDSN: pgtest.NewDatabase(tb), dir: tb.TempDir(), prefix: "b" + randAlnum(4)}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, w.targetDSN)
	require.NoError(tb, err)
	defer conn.Close(ctx)
	for _, side := range sides {
		_, err = conn.Exec(ctx, fmt.Sprintf(`DO $$ BEGIN FOR i IN 0..%d LOOP
			EXECUTE format('CREATE ROLE %%I NOLOGIN', '%s' || lpad(i::text, 4, '0'));
			EXECUTE format('CREATE ROLE %%I LOGIN PASSWORD %%L IN ROLE %%I', '%s' || lpad(i::text, 4, '0') || '_blue', 'bench-initial', '%s' || lpad(i::text, 4, '0'));
			EXECUTE format('CREATE ROLE %%I NOLOGIN IN ROLE %%I', '%s' || lpad(i::text, 4, '0') || '_green', '%s' || lpad(i::text, 4, '0'));
			END LOOP; END $$`, n-1, w.role(side), w.role(side), w.role(side), w.role(side), w.role(side)))
		require.NoError(tb, err)
	}
	// The role the benchmark's login reference logs in as.
	_, err = conn.Exec(ctx, "CREATE ROLE "+pgx.Identifier{w.loginRole()}.Sanitize()+" LOGIN PASSWORD '"+loginPassword+"'")
	require.NoError(tb, err)
	tb.Cleanup(func() {
		conn, err := pgx.Connect(ctx, pgtest.AdminDSN(tb))
		if err != nil {
			return
		}
		defer conn.Close(ctx)
		_, _ = conn.Exec(ctx, fmt.Sprintf(`DO $$ DECLARE r text; BEGIN
			FOR r IN SELECT rolname FROM pg_roles WHERE rolname LIKE '%s%%' ORDER BY length(rolname) DESC LOOP
			EXECUTE format('DROP ROLE %%I', r); END LOOP; END $$`, w.prefix))
	})
	return w
}

func (w *world) role(side string) string { return w.prefix + side }

func (w *world) loginRole() string { return w.prefix + "login" }

const loginPassword = "bench-login-reference"

// login is one login with a password and SELECT 1, as the floor's and the
// engine's login tests do: the reference that says what a login costs.
func (w *world) login(int) error {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pgtest.UserDSN(w.targetDSN, w.loginRole(), loginPassword))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "SELECT 1")
	return err
}

func (w *world) group(side string, i int) string { return fmt.Sprintf("%s%04d", w.role(side), i) }

// result of one side: per-rotation latencies and the wall time.
type result struct {
	lat  []time.Duration
	wall time.Duration
}

func (r result) perSecond() float64 { return float64(len(r.lat)) / r.wall.Seconds() }

func (r result) pct(p float64) time.Duration {
	s := slices.Clone(r.lat)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p)
	return s[i]
}

// bounded runs fn(i) for i in [from,to) with at most concurrency at a time and
// records each call's latency.
func bounded(from, to int, fn func(i int) error) (result, error) {
	return boundedN(from, to, concurrency, fn)
}

// boundedN is bounded with at most k calls at a time.
func boundedN(from, to, k int, fn func(i int) error) (result, error) {
	var next atomic.Int64
	next.Store(int64(from))
	n := to
	lat := make([]time.Duration, to-from)
	errs := make(chan error, k)
	var wg sync.WaitGroup
	start := time.Now()
	for g := 0; g < k; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				t0 := time.Now()
				if err := fn(i); err != nil {
					errs <- fmt.Errorf("rotation %d: %w", i, err)
					return
				}
				lat[i-from] = time.Since(t0)
			}
		}()
	}
	wg.Wait()
	r := result{lat: lat, wall: time.Since(start)}
	select {
	case err := <-errs:
		return r, err
	default:
		return r, nil
	}
}

// engine rotates secret i of the engine side end to end: files store,
// grace and monitor zero, one try per action.
type engineSide struct {
	w         *world
	targetDSN string
	engine    *rotation.Engine
	store     *files.Store
	pools     *postgres.Pools
	// publish, when set, is where secret id is published instead of the
	// files store.
	publish func(id string) rotation.Publication
}

func newEngineSide(tb testing.TB, w *world, stateDSN, targetDSN string) *engineSide {
	tb.Helper()
	ctx := context.Background()
	db, err := state.Open(ctx, stateDSN)
	require.NoError(tb, err)
	tb.Cleanup(db.Close)
	_, err = db.Migrate(ctx)
	require.NoError(tb, err)
	keyText, err := seal.Generate(nil)
	require.NoError(tb, err)
	key, err := seal.Parse(keyText)
	require.NoError(tb, err)
	store, err := files.New(&policy.FilesSpec{Dir: filepath.Join(w.dir, "engine")}, "")
	require.NoError(tb, err)
	e := &rotation.Engine{DB: db, Key: key, Logger: slog.New(slog.DiscardHandler), Holder: "bench", LeaseTTL: 30 * time.Second}
	// One admin pool for the server, shared by every secret, as
	// cmd/rotator's wiring does.
	pools := postgres.NewPools()
	tb.Cleanup(pools.Close)
	return &engineSide{w: w, targetDSN: targetDSN, engine: e, store: store, pools: pools}
}

func (s *engineSide) rotate(i int) error {
	ctx := context.Background()
	spec := &policy.PostgresSpec{Role: s.w.group("e", i), Connection: map[string]string{"database": "bench"}}
	r, err := postgres.New(spec, secret.New(s.targetDSN), postgres.WithLogger(slog.New(slog.DiscardHandler)), postgres.WithPools(s.pools))
	if err != nil {
		return err
	}
	defer r.Close()
	id := fmt.Sprintf("bench/%04d", i)
	pub := rotation.Publication{StoreName: "local", Path: id + ".json", Store: s.store}
	if s.publish != nil {
		pub = s.publish(id)
	}
	t := rotation.Target{ID: id, Class: "database", Rotator: r,
		Publish: []rotation.Publication{pub},
		Grace:   0, Monitor: 0, OnTimeout: "proceed", Retry: rotation.Retry{Attempts: 1}, Poll: time.Millisecond}
	res, err := s.engine.Run(ctx, t, rotation.Options{Wait: true})
	if err != nil {
		return err
	}
	if res.Status != state.RunSucceeded {
		return fmt.Errorf("%s: %s: %v", id, res.Status, res.Err)
	}
	return nil
}

// floorSide does the engine's minimum durable work without the engine,
// over a shared admin pool: one ALTER ROLE setting a SCRAM verifier and
// LOGIN on the standby, one login with the new password and SELECT 1, one
// NOLOGIN on the role it replaces, and one atomic, fsynced file write that
// keeps the replaced file as .previous (a hard link renamed into place:
// no second data write; then the new file written to a temporary file,
// fsynced, renamed over the current one, and the directory fsynced once).
// It alternates each pair's roles as the engine does: blue, green, blue.
type floorSide struct {
	w         *world
	targetDSN string
	admin     *pgxpool.Pool
	dir       string
	green     []bool // pair i's current role is green
}

func newFloorSide(tb testing.TB, w *world, targetDSN string, n int) *floorSide {
	tb.Helper()
	cfg, err := pgxpool.ParseConfig(targetDSN)
	require.NoError(tb, err)
	cfg.MaxConns = concurrency
	p, err := pgxpool.NewWithConfig(context.Background(), cfg)
	require.NoError(tb, err)
	tb.Cleanup(p.Close)
	dir := filepath.Join(w.dir, "floor", "bench")
	require.NoError(tb, os.MkdirAll(dir, 0o700))
	return &floorSide{w: w, targetDSN: targetDSN, admin: p, dir: dir, green: make([]bool, n)}
}

func (s *floorSide) rotate(i int) error {
	ctx := context.Background()
	g := s.w.group("f", i)
	cur, next := g+"_blue", g+"_green"
	if s.green[i] {
		cur, next = next, cur
	}
	pw := randAlnum(32)
	v, err := scramVerifier(pw)
	if err != nil {
		return err
	}
	if _, err := s.admin.Exec(ctx, "ALTER ROLE "+pgx.Identifier{next}.Sanitize()+" WITH LOGIN PASSWORD '"+v+"'"); err != nil {
		return err
	}
	conn, err := pgx.Connect(ctx, pgtest.UserDSN(s.targetDSN, next, pw))
	if err != nil {
		return err
	}
	_, err = conn.Exec(ctx, "SELECT 1")
	_ = conn.Close(ctx)
	if err != nil {
		return err
	}
	if _, err := s.admin.Exec(ctx, "ALTER ROLE "+pgx.Identifier{cur}.Sanitize()+" NOLOGIN"); err != nil {
		return err
	}
	s.green[i] = !s.green[i]
	b, _ := json.Marshal(map[string]string{"username": next, "password": pw, "database": "bench"})
	return writeKeepingPrevious(filepath.Join(s.dir, fmt.Sprintf("%04d.json", i)), b)
}

// writeKeepingPrevious replaces path with data atomically and durably,
// keeping what it held as path.previous.
func writeKeepingPrevious(path string, data []byte) error {
	if err := os.Link(path, path+".tmp-prev"); err == nil {
		if err := os.Rename(path+".tmp-prev", path+".previous"); err != nil {
			return err
		}
	} else if !os.IsNotExist(err) {
		return err
	}
	f, err := os.OpenFile(path+".tmp", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func scramVerifier(pw string) (string, error) {
	salt := make([]byte, 16)
	_, _ = rand.Read(salt)
	salted, err := pbkdf2.Key(sha256.New, pw, salt, 4096, 32)
	if err != nil {
		return "", err
	}
	mac := func(k []byte, s string) []byte { h := hmac.New(sha256.New, k); h.Write([]byte(s)); return h.Sum(nil) }
	ck := mac(salted, "Client Key")
	sk := sha256.Sum256(ck)
	b64 := base64.StdEncoding.EncodeToString
	return "SCRAM-SHA-256$4096:" + b64(salt) + "$" + b64(sk[:]) + ":" + b64(mac(salted, "Server Key")), nil
}

func randAlnum(n int) string {
	const a = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = a[int(b[i])%len(a)]
	}
	return string(b)
}

// BenchmarkRotate: b.N blue/green pairs for the engine and b.N for the
// floor, each rotated once untimed (so that every pair has a published
// version and the measured rotation replaces it, keeping .previous: the
// steady state), then once more, timed, with the same concurrency. The
// timed rotations run in four interleaved chunks (engine, floor, floor,
// engine) so that a machine whose load changes during the run slows both
// alike. It reports rotations per second, p50 and p99 latency, and the
// ratio of the wall times (the figure to read on a busy machine).
//
// It also reports the CPU time each side spends per rotation, in this
// process and in the Postgres cluster (target and state databases), and
// the CPU time of one login with a password and SELECT 1 (b.N logins, 8
// at a time, after the rotations): the work each does, which the load of
// a shared machine moves far less than wall time. The floor does one
// login and the engine two (generate's test and monitor's), so the
// engine's CPU is at least the floor's plus one login's; login-share is
// that login over the floor's CPU, the least the engine/floor ratios can
// be while the engine logs in twice.
//
//	go test ./bench -run '^$' -bench Rotate -benchtime 1000x -count 1
func BenchmarkRotate(b *testing.B) {
	n := b.N
	w := newWorld(b, n)
	es := newEngineSide(b, w, w.stateDSN, w.targetDSN)
	fs := newFloorSide(b, w, w.targetDSN, n)
	_, err := bounded(0, n, es.rotate)
	require.NoError(b, err)
	_, err = bounded(0, n, fs.rotate)
	require.NoError(b, err)
	cpu, err := newCPUMeter(context.Background(), w.targetDSN)
	require.NoError(b, err)
	b.ResetTimer()
	var er, fr result
	var ecpu, fcpu cpuSample
	q := n / 4
	for _, c := range []struct {
		side     *result
		cpu      *cpuSample
		fn       func(int) error
		from, to int
	}{{&er, &ecpu, es.rotate, 0, q}, {&fr, &fcpu, fs.rotate, 0, 2 * q}, {&er, &ecpu, es.rotate, q, n}, {&fr, &fcpu, fs.rotate, 2 * q, n}} {
		c0 := cpu.read()
		r, err := bounded(c.from, c.to, c.fn)
		require.NoError(b, err)
		d := cpu.read().sub(c0)
		c.cpu.self += d.self
		c.cpu.postgres += d.postgres
		c.side.lat = append(c.side.lat, r.lat...)
		c.side.wall += r.wall
	}
	b.StopTimer()
	c0 := cpu.read()
	_, err = bounded(0, n, w.login)
	require.NoError(b, err)
	lcpu := cpu.read().sub(c0)
	perRot := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(n) }
	b.ReportMetric(perRot(ecpu.total()), "engine-cpu-ms")
	b.ReportMetric(perRot(ecpu.postgres), "engine-pg-cpu-ms")
	b.ReportMetric(perRot(fcpu.total()), "floor-cpu-ms")
	b.ReportMetric(perRot(fcpu.postgres), "floor-pg-cpu-ms")
	b.ReportMetric(perRot(lcpu.total()), "login-cpu-ms")
	b.ReportMetric(float64(ecpu.total())/float64(fcpu.total()), "engine/floor-cpu")
	b.ReportMetric(float64(lcpu.total())/float64(fcpu.total()), "login-share")
	b.ReportMetric(er.perSecond(), "engine-rot/s")
	b.ReportMetric(fr.perSecond(), "floor-rot/s")
	b.ReportMetric(float64(er.pct(0.5).Microseconds())/1000, "engine-p50-ms")
	b.ReportMetric(float64(er.pct(0.99).Microseconds())/1000, "engine-p99-ms")
	b.ReportMetric(float64(fr.pct(0.5).Microseconds())/1000, "floor-p50-ms")
	b.ReportMetric(float64(fr.pct(0.99).Microseconds())/1000, "floor-p99-ms")
	b.ReportMetric(er.wall.Seconds()/fr.wall.Seconds(), "engine/floor")
	b.ReportMetric(0, "ns/op")
}

// Round trips of one steady-state rotation (measured by
// TestEngineAndFloor through proxies that read the wire; see
// docs/performance.md for where each goes). The test fails when one grows.
const (
	engineStateRoundTrips = 7
	engineTargetQueries   = 6
	engineTargetLogins    = 2
	floorTargetQueries    = 3
	floorTargetLogins     = 1
	targetQueriesPerLogin = 1 // SELECT 1 after the login
	roundTripTolerance    = 0.01
)

// TestEngineAndFloor runs a few rotations each way (so the default test
// run keeps the benchmark's code working) and counts, per steady-state
// rotation, the round trips to the state database and to the target
// (queries, and connections: logins) through proxies that read the wire.
func TestEngineAndFloor(t *testing.T) {
	const n = 10
	w := newWorld(t, n)
	stateProxy := newCounter(t, hostPort(w.stateDSN))
	targetProxy := newCounter(t, hostPort(w.targetDSN))
	proxied := func(dsn string, c *counter) string { return strings.Replace(dsn, hostPort(dsn), c.addr, 1) }
	es := newEngineSide(t, w, proxied(w.stateDSN, stateProxy), proxied(w.targetDSN, targetProxy))
	fs := newFloorSide(t, w, proxied(w.targetDSN, targetProxy), n)
	// First rotations: pools connect, statements are prepared, every pair
	// gets a published version.
	_, err := bounded(0, n, es.rotate)
	require.NoError(t, err)
	_, err = bounded(0, n, fs.rotate)
	require.NoError(t, err)

	measure := func(rotate func(int) error) (state, queries, logins float64) {
		s0, q0, c0 := stateProxy.roundTrips.Load(), targetProxy.roundTrips.Load(), targetProxy.conns.Load()
		for i := 0; i < n; i++ {
			require.NoError(t, rotate(i))
		}
		return float64(stateProxy.roundTrips.Load()-s0) / n, float64(targetProxy.roundTrips.Load()-q0) / n, float64(targetProxy.conns.Load()-c0) / n
	}
	es0, eq, el := measure(es.rotate)
	fs0, fq, fl := measure(fs.rotate)
	t.Logf("per rotation: engine %.1f state round trips, %.1f target queries, %.1f target logins; floor %.1f, %.1f, %.1f", es0, eq, el, fs0, fq, fl)
	require.Zero(t, fs0, "the floor has no state database")
	require.Equal(t, float64(floorTargetLogins), fl)
	require.LessOrEqual(t, fq, float64(floorTargetQueries+floorTargetLogins*targetQueriesPerLogin)+roundTripTolerance)
	require.LessOrEqual(t, es0, float64(engineStateRoundTrips)+roundTripTolerance, "state round trips of one engine rotation")
	require.Equal(t, float64(engineTargetLogins), el)
	require.LessOrEqual(t, eq, float64(engineTargetQueries+engineTargetLogins*targetQueriesPerLogin)+roundTripTolerance, "target queries of one engine rotation")
}
func hostPort(dsn string) string {
	s := dsn[strings.Index(dsn, "@")+1:]
	return s[:strings.Index(s, "/")]
}

// counter forwards TCP to a Postgres server and counts the round trips the
// client asks for: every Sync ('S') and simple Query ('Q') message ends one
// (the server answers once per Sync or Query).
type counter struct {
	addr       string
	roundTrips atomic.Int64
	conns      atomic.Int64
}

func newCounter(t *testing.T, to string) *counter {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	c := &counter{addr: ln.Addr().String()}
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			c.conns.Add(1)
			go func() {
				out, err := net.Dial("tcp", to)
				if err != nil {
					_ = in.Close()
					return
				}
				go func() { _, _ = io.Copy(in, out); _ = in.Close() }()
				c.scan(in, out)
				_ = out.Close()
			}()
		}
	}()
	return c
}

// scan copies the client's messages to out, counting Syncs and Queries.
// The first message (startup, or SSL request then startup) has no type.
func (c *counter) scan(in net.Conn, out net.Conn) {
	hdr := make([]byte, 5)
	readMsg := func(typed bool) (byte, []byte, error) {
		n := 4
		if typed {
			n = 5
		}
		if _, err := io.ReadFull(in, hdr[:n]); err != nil {
			return 0, nil, err
		}
		var typ byte
		l := hdr[:4]
		if typed {
			typ, l = hdr[0], hdr[1:5]
		}
		size := int(l[0])<<24 | int(l[1])<<16 | int(l[2])<<8 | int(l[3])
		body := make([]byte, size-4)
		if _, err := io.ReadFull(in, body); err != nil {
			return 0, nil, err
		}
		// Counted before it is forwarded, so a round trip is counted
		// before its answer can reach the client.
		if typed && (typ == 'S' || typ == 'Q') {
			c.roundTrips.Add(1)
		}
		msg := append(append([]byte(nil), hdr[:n]...), body...)
		_, err := out.Write(msg)
		return typ, body, err
	}
	for {
		_, body, err := readMsg(false)
		if err != nil {
			return
		}
		if len(body) == 4 && body[0] == 0x04 && body[1] == 0xd2 { // SSLRequest / GSSENCRequest
			continue
		}
		break
	}
	for {
		if _, _, err := readMsg(true); err != nil {
			return
		}
	}
}
