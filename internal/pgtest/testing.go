package pgtest

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"
)

// shared is the cluster of one test binary. Test binaries are separate
// processes, so this is per package under test.
var shared struct {
	once    sync.Once
	cluster *Cluster
	dsn     string // admin DSN, database "postgres"
	err     error
}

// Main runs the tests of a package and stops the package's cluster after
// them. Use it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
func Main(m *testing.M) int {
	code := m.Run()
	if shared.cluster != nil {
		_ = shared.cluster.Close()
	}
	return code
}

// AdminDSN returns a superuser DSN of the package's cluster (started on first
// use), or of TEST_DATABASE_URL. It fails the test, saying how to fix it,
// when no server can be had.
func AdminDSN(t testing.TB) string {
	t.Helper()
	shared.once.Do(func() {
		if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
			shared.dsn = u
			return
		}
		shared.cluster, shared.err = Start(Options{})
		if shared.err == nil {
			shared.dsn = shared.cluster.DSN("postgres")
		}
	})
	if shared.err != nil {
		t.Fatalf("%v\n(%s)", shared.err, howToInstall)
	}
	return shared.dsn
}

// SharedCluster returns the package's cluster, nil when TEST_DATABASE_URL is
// in use (tests that stop the server need a cluster of their own then).
func SharedCluster(t testing.TB) *Cluster {
	t.Helper()
	AdminDSN(t)
	return shared.cluster
}

// NewDatabase creates a fresh database for one test and returns a superuser
// DSN to it; the database is dropped when the test ends.
func NewDatabase(t testing.TB) string {
	t.Helper()
	admin := AdminDSN(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	name, err := CreateDatabase(ctx, admin, "t")
	if err != nil {
		t.Fatalf("pgtest: create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := DropDatabase(ctx, admin, name); err != nil {
			t.Logf("pgtest: drop database %s: %v", name, err)
		}
	})
	return WithDatabase(admin, name)
}

// NewCluster starts a cluster of the test's own (to stop and start it), and
// closes it at cleanup.
func NewCluster(t testing.TB) *Cluster {
	t.Helper()
	c, err := Start(Options{})
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Describe says where the tests' server is, for failure messages.
func Describe() string {
	if shared.cluster != nil {
		return fmt.Sprintf("throwaway cluster on 127.0.0.1:%d (%s)", shared.cluster.Port, shared.cluster.Dir)
	}
	return "TEST_DATABASE_URL"
}
