package proof_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	driver "github.com/go-sql-driver/mysql"
	"github.com/stretchr/testify/require"
)

// How the clients of the CLI live-client proofs of MariaDB and Redis
// behave (cliLiveClients; docs/proof.md, "MariaDB users", "Redis ACL
// users").
const (
	cliLiveClientCount = 10
	cliLiveRefresh     = 50 * time.Millisecond // a client re-reads the published file this often
	cliLiveRotations   = 15
)

// mysqlRootDSN is the MariaDB server this machine runs (root, empty
// password); ROTATOR_TEST_MYSQL_DSN sets another.
func mysqlRootDSN() string {
	if d := os.Getenv("ROTATOR_TEST_MYSQL_DSN"); d != "" {
		return d
	}
	return "root@tcp(127.0.0.1:3306)/"
}

const mysqlLoadPolicy = `version: 1
stores:
  - name: local
    files:
      dir: secrets
secrets:
  - id: db/mariadb
    class: database
    rotator:
      mysql:
        admin_dsn: {env: ROTATOR_MYSQL_ADMIN_DSN}
        role: %s
        connection: {host: 127.0.0.1, port: "3306"}
    publish:
      - store: local
        path: db/mariadb.json
    checks:
      - delay: 1s
    grace: 30s
    monitor: 0s
    retry: {attempts: 3, initial: 1s, max: 1s}
`

// TestMySQLLiveClients: clients that reconnect continuously to MariaDB
// with whatever the files store publishes (re-read every 50ms) never fail
// a login while `rotator run` rotates the blue/green pair again and again
// from a policies file. PROOF_ROTATIONS=N sets another number of
// rotations.
func TestMySQLLiveClients(t *testing.T) {
	role := newMySQLRole(t, "pl").role
	cliLiveClients(t, cliLive{
		kind: "mariadb blue/green", id: "db/mariadb", policy: fmt.Sprintf(mysqlLoadPolicy, role),
		env:   []string{"ROTATOR_MYSQL_ADMIN_DSN=" + mysqlRootDSN()},
		init:  "created user '" + role + "_blue'@'%' (locked)",
		login: mysqlClientLogin,
	})
}

// cliLive is a live-client proof through the CLI: the policy rotates
// secret id, published to the files store at <id>.json, which the
// clients read.
type cliLive struct {
	kind   string // for the log line
	id     string
	policy string
	env    []string // the kind's: its admin DSN or URL
	// init, when set, runs `rotator init` first and is a line of its
	// output.
	init  string
	login func(ctx context.Context, user, password string) error
}

// cliLiveClients runs `rotator migrate` (and init), one `rotator run`
// (the clients start from what it published), then starts cliLiveClientCount
// clients that re-read the published file every cliLiveRefresh and
// log in, and rotates PROOF_ROTATIONS (default cliLiveRotations) times, one
// process per rotation. It requires zero failed logins, more logins than
// rotations × clients and a new version per run; it returns every
// credential published, oldest first.
func cliLiveClients(t *testing.T, c cliLive) []cred {
	n := cliLiveRotations
	if v, err := strconv.Atoi(os.Getenv("PROOF_ROTATIONS")); err == nil && v > 0 {
		n = v
	}
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "policies.yaml"), []byte(c.policy), 0o600))
	bin := loadBinary()
	key, err := exec.Command(bin, "keygen").Output()
	require.NoError(t, err)
	env := append(append(os.Environ(), "DATABASE_URL="+newStateDSN(t),
		"ROTATOR_STATE_KEY="+strings.TrimSpace(string(key)), "ROTATOR_POLICIES=", "ROTATOR_LOG_FORMAT=json"), c.env...)
	cli := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Dir, cmd.Env = dir, env
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "rotator %v:\n%s", args, out)
		return string(out)
	}
	cli("migrate")
	if c.init != "" {
		require.Contains(t, cli("init", "--secret", c.id), c.init)
	}
	// Before the first rotation nothing is published (MariaDB: both users
	// are locked): the clients start once something is.
	require.Contains(t, cli("run", "--secret", c.id), c.id+": rotated")
	readCred := func() (cred, error) {
		var cr cred
		b, err := os.ReadFile(filepath.Join(dir, "secrets", c.id+".json"))
		if err != nil {
			return cr, err
		}
		return cr, json.Unmarshal(b, &cr)
	}
	first, err := readCred()
	require.NoError(t, err)
	published := []cred{first}

	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var logins, failures atomic.Int64
	var mu sync.Mutex
	var firstErrors []string
	for i := 0; i < cliLiveClientCount; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var cr cred
			var read time.Time
			for ctx.Err() == nil {
				if time.Since(read) >= cliLiveRefresh {
					nc, err := readCred()
					if err != nil {
						failures.Add(1)
						continue
					}
					cr, read = nc, time.Now()
				}
				err := c.login(ctx, cr.User, cr.Password)
				if ctx.Err() != nil {
					return
				}
				logins.Add(1)
				if err != nil {
					failures.Add(1)
					mu.Lock()
					if len(firstErrors) < 5 {
						firstErrors = append(firstErrors, cr.User+": "+err.Error())
					}
					mu.Unlock()
				}
				time.Sleep(10 * time.Millisecond)
			}
		}()
	}
	start := time.Now()
	for i := 0; i < n; i++ {
		require.Contains(t, cli("run", "--secret", c.id), c.id+": rotated", "rotation %d", i+1)
		cr, err := readCred()
		require.NoError(t, err)
		published = append(published, cr)
	}
	took := time.Since(start)
	time.Sleep(2 * cliLiveRefresh)
	stop()
	wg.Wait()
	final := published[len(published)-1]
	t.Logf("%s: %d rotations in %s (%s each), %d client logins, %d failed %q", c.kind, n, took.Round(time.Millisecond),
		(took / time.Duration(n)).Round(time.Millisecond), logins.Load(), failures.Load(), firstErrors)
	require.Zero(t, failures.Load(), "no client may fail a login with the published credential: %q", firstErrors)
	require.Greater(t, logins.Load(), int64(n*cliLiveClientCount), "the clients kept logging in")
	require.Equal(t, strconv.Itoa(n+1), final.Version, "every run published a new version")
	return published
}

// mysqlClientLogin connects as a client would and runs a query.
func mysqlClientLogin(ctx context.Context, user, password string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cfg := driver.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr = user, password, "tcp", "127.0.0.1:3306"
	c, err := driver.NewConnector(cfg)
	if err != nil {
		return err
	}
	db := sql.OpenDB(c)
	defer db.Close()
	var one int
	return db.QueryRowContext(ctx, "SELECT 1").Scan(&one)
}
