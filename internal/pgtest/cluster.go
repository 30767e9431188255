// Package pgtest starts throwaway PostgreSQL clusters that check passwords
// (scram-sha-256 on TCP), for tests and the demo. The machine's own server
// trusts every local login, so a wrong password would pass there; these
// clusters are the only honest place to test a password rotation.
//
// Set TEST_DATABASE_URL to use an existing server instead (it must check
// passwords for the rotation tests to mean anything).
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Cluster is a running throwaway PostgreSQL cluster.
type Cluster struct {
	Dir      string // data directory
	Port     int
	Password string // of the superuser "postgres"
	bin      string
	cred     *syscall.Credential
	logFile  string
}

// Options for Start.
type Options struct {
	// Dir is the parent directory for the cluster; a temp dir when empty.
	Dir string
	// Port to listen on; a free one when 0.
	Port int
}

const howToInstall = "install the PostgreSQL server binaries (Debian: apt-get install postgresql-15) " +
	"so that initdb and pg_ctl are on PATH or in /usr/lib/postgresql/*/bin, or set TEST_DATABASE_URL " +
	"to a server that checks passwords"

// findBin locates the directory holding initdb and pg_ctl.
func findBin() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		return filepath.Dir(p), nil
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(matches) > 0 {
		return filepath.Dir(matches[len(matches)-1]), nil
	}
	return "", fmt.Errorf("pgtest: initdb not found: %s", howToInstall)
}

// FreePort asks the kernel for a free loopback TCP port.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Start creates and starts a cluster. PostgreSQL refuses to run as root, so
// when the process is root the cluster runs as the "postgres" user.
func Start(opts Options) (*Cluster, error) {
	bin, err := findBin()
	if err != nil {
		return nil, err
	}
	parent := opts.Dir
	if parent == "" {
		parent = os.TempDir()
	}
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	dir, err := os.MkdirTemp(parent, "rotator-pg-")
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	port := opts.Port
	if port == 0 {
		if port, err = FreePort(); err != nil {
			return nil, fmt.Errorf("pgtest: free port: %w", err)
		}
	}
	pw := make([]byte, 16)
	_, _ = rand.Read(pw)
	c := &Cluster{Dir: dir, Port: port, Password: hex.EncodeToString(pw), bin: bin,
		logFile: filepath.Join(dir, "postgres.log")}

	if c.cred, err = runAs(); err != nil {
		return nil, err
	}
	if c.cred != nil {
		_ = os.Chmod(dir, 0o700)
		if err := os.Chown(dir, int(c.cred.Uid), int(c.cred.Gid)); err != nil {
			return nil, fmt.Errorf("pgtest: %w", err)
		}
	}
	pwfile := filepath.Join(dir, "pwfile")
	if err := os.WriteFile(pwfile, []byte(c.Password+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	if c.cred != nil {
		_ = os.Chown(pwfile, int(c.cred.Uid), int(c.cred.Gid))
	}
	data := filepath.Join(dir, "data")
	if out, err := c.run("initdb", "-D", data, "-U", "postgres", "--pwfile", pwfile,
		"--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync", "--locale=C"); err != nil {
		return nil, fmt.Errorf("pgtest: initdb: %w\n%s", err, out)
	}
	_ = os.Remove(pwfile)
	conf := fmt.Sprintf("\nlisten_addresses = '127.0.0.1'\nport = %d\nunix_socket_directories = '%s'\n"+
		"fsync = off\nsynchronous_commit = off\nfull_page_writes = off\nmax_connections = 300\n"+
		"password_encryption = 'scram-sha-256'\nshared_buffers = 64MB\n", port, dir)
	f, err := os.OpenFile(filepath.Join(data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	_, _ = f.WriteString(conf)
	_ = f.Close()
	if err := c.StartServer(); err != nil {
		return nil, err
	}
	return c, nil
}

// runAs returns the credential to run PostgreSQL with: PostgreSQL refuses
// to run as root, so root runs it as the "postgres" user.
func runAs() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("pgtest: running as root and there is no 'postgres' user to run the cluster as: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// Attach returns the cluster whose files are in dir (made by Start), to stop
// or close it from another process.
func Attach(dir string) (*Cluster, error) {
	bin, err := findBin()
	if err != nil {
		return nil, err
	}
	cred, err := runAs()
	if err != nil {
		return nil, err
	}
	return &Cluster{Dir: dir, bin: bin, cred: cred, logFile: filepath.Join(dir, "postgres.log")}, nil
}

func (c *Cluster) run(name string, args ...string) ([]byte, error) {
	cmd := exec.Command(filepath.Join(c.bin, name), args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	if c.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	}
	cmd.Dir = c.Dir
	return cmd.CombinedOutput()
}

// StartServer starts the cluster's server (again, after StopServer) and
// waits until it accepts connections.
func (c *Cluster) StartServer() error {
	if out, err := c.run("pg_ctl", "-D", filepath.Join(c.Dir, "data"), "-l", c.logFile, "-w", "-t", "60", "start"); err != nil {
		logTail, _ := os.ReadFile(c.logFile)
		return fmt.Errorf("pgtest: pg_ctl start: %w\n%s\n%s", err, out, logTail)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		conn, err := pgx.Connect(ctx, c.DSN("postgres"))
		if err == nil {
			_ = conn.Close(ctx)
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("pgtest: server on port %d did not accept connections: %w", c.Port, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// StopServer stops the server immediately, keeping its data (to test an
// outage).
func (c *Cluster) StopServer() error {
	if out, err := c.run("pg_ctl", "-D", filepath.Join(c.Dir, "data"), "-m", "immediate", "-w", "stop"); err != nil {
		return fmt.Errorf("pgtest: pg_ctl stop: %w\n%s", err, out)
	}
	return nil
}

// Close stops the server and removes the cluster's files.
func (c *Cluster) Close() error {
	err := c.StopServer()
	if rmErr := os.RemoveAll(c.Dir); rmErr != nil && err == nil {
		err = rmErr
	}
	return err
}

// DSN returns the superuser's connection string for database db.
func (c *Cluster) DSN(db string) string {
	return UserDSN(fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.Port, db), "postgres", c.Password)
}

// UserDSN returns dsn with its user and password replaced.
func UserDSN(dsn, user, password string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return dsn
	}
	u.User = url.UserPassword(user, password)
	return u.String()
}

// WithDatabase returns dsn pointing at database db.
func WithDatabase(dsn, db string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return dsn
	}
	u.Path = "/" + db
	return u.String()
}

// CreateDatabase creates a database with a random name on the server that
// adminDSN reaches and returns its name.
func CreateDatabase(ctx context.Context, adminDSN, prefix string) (string, error) {
	conn, err := pgx.Connect(ctx, adminDSN)
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := strings.ToLower(prefix) + "_" + hex.EncodeToString(b)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", err
	}
	return name, nil
}

// DropDatabase drops a database, ending its sessions.
func DropDatabase(ctx context.Context, adminDSN, name string) error {
	conn, err := pgx.Connect(ctx, adminDSN)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	return err
}

// ErrNoServer is returned when no cluster could be started.
var ErrNoServer = errors.New("pgtest: no PostgreSQL server for tests")
