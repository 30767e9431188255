package mysql_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/secret"
	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/rotators/mysql"
)

// lockedBuffer is a log sink for concurrent writers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestSharedPoolUnderKills: more secrets of one server rotate at once
// than the shared admin pool holds (as --per-server above SharedMaxConns
// does), while another session KILLs the admin account's sessions one
// after another (between and in the middle of statements, the fence's
// included). Calls fail (transiently) but: every call returns within its
// deadline (no caller waits on a connection another holds for good), no
// error or log line holds the admin password, no session is left holding
// a secret's fence lock, and every secret's current credential logs in.
func TestSharedPoolUnderKills(t *testing.T) {
	const secrets, rounds = 20, 5
	root := newFixture(t).root
	admin, pw := "rtadm_"+randHex(4), "Adm"+randHex(10)
	_, err := root.Exec(fmt.Sprintf("CREATE USER '%s'@'%%' IDENTIFIED BY '%s'", admin, pw))
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = root.Exec(fmt.Sprintf("DROP USER IF EXISTS '%s'@'%%'", admin)) })
	_, err = root.Exec(fmt.Sprintf("GRANT ALL ON *.* TO '%s'@'%%' WITH GRANT OPTION", admin))
	require.NoError(t, err)
	dsn := secret.New(admin + ":" + pw + "@tcp(127.0.0.1:3306)/")
	var logs lockedBuffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	pools := mysql.NewPools()
	t.Cleanup(pools.Close)
	type state struct {
		f   *fixture
		r   *mysql.Rotator
		cur rotation.Credential
	}
	var ss []*state
	for i := 0; i < secrets; i++ {
		f := newFixture(t)
		f.initialized(t)
		r, err := mysql.New(f.spec(), dsn, mysql.WithPools(pools), mysql.WithLogger(logger))
		require.NoError(t, err)
		t.Cleanup(r.Close)
		ss = append(ss, &state{f: f, r: r})
	}

	stop, killed := make(chan struct{}), make(chan int)
	go func() {
		n := 0
		defer func() { killed <- n }()
		for {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			var id int64
			if err := root.QueryRow("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = ? ORDER BY RAND() LIMIT 1", admin).Scan(&id); err == nil {
				if _, err := root.Exec(fmt.Sprintf("KILL CONNECTION %d", id)); err == nil {
					n++
				}
			}
		}
	}()
	var mu sync.Mutex
	var errs []error
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	var wg sync.WaitGroup
	for _, s := range ss {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 1; j <= rounds; j++ {
				fence := rotation.Fence{Token: int64(j), RunID: fmt.Sprintf("run-%d", j)}
				ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
				// As the engine: a generated credential is published (the
				// current one from then on), then the old one is retired;
				// a retire that fails is retried by a later run.
				g, err := s.r.Generate(ctx, rotation.GenerateRequest{SecretID: s.f.role, RunID: fence.RunID, Current: s.cur.Meta(), Fence: fence})
				if err == nil {
					old := s.cur
					s.cur = g.Credential
					if old.Username != "" {
						err = s.r.Retire(ctx, rotation.RetireRequest{SecretID: s.f.role, Old: old.Meta(), New: g.Credential.Meta(), Fence: fence})
					}
				}
				if ctx.Err() != nil {
					fail(fmt.Errorf("secret %s round %d: ran out of its deadline: %v", s.f.role, j, err))
				}
				cancel()
				if err != nil {
					fail(err)
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	t.Logf("%d admin sessions killed; %d of %d rotations failed", <-killed, len(errs), secrets*rounds)
	for _, err := range errs {
		require.NotContains(t, err.Error(), pw, "an error holds the admin password")
		require.NotContains(t, err.Error(), "ran out of its deadline")
	}
	require.NotContains(t, logs.String(), pw, "a log line holds the admin password")
	for _, s := range ss {
		// A killed or discarded session frees its locks as its thread
		// ends, a moment later; a pooled session would hold it for good.
		deadline := time.Now().Add(10 * time.Second)
		for id := lockHolder(t, root, s.f.fenceLock()); id != 0; id = lockHolder(t, root, s.f.fenceLock()) {
			require.True(t, time.Now().Before(deadline), "session %d holds the fence lock of %s", id, s.f.role)
			time.Sleep(10 * time.Millisecond)
		}
		if s.cur.Username != "" {
			require.NoError(t, login(s.cur.Username, s.cur.Secret.Reveal()), "the current credential of %s", s.f.role)
		}
	}
	require.Less(t, len(errs), secrets*rounds, "no rotation went through")
}
