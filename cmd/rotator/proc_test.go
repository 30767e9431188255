package main_test

// Helpers for the process-level tests of the daemon and of several
// replicas: long-running rotator processes whose stderr the test watches,
// and short ones run to completion from several goroutines at once.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/rotator/rotator/internal/clitest"
)

// env is one test's environment: a directory with policies.yaml and the
// variables every rotator process of the test gets.
type env struct {
	t    *testing.T
	dir  string
	vars []string
}

// newEnv makes a directory holding policy, a state key, and the
// environment: the state database, a 2s lease TTL (so a killed process's
// lease expires quickly) and JSON logs.
func newEnv(t *testing.T, stateDSN, policy string, extra ...string) *env {
	t.Helper()
	dir := t.TempDir()
	vars := clitest.Setup(t, binary, dir, stateDSN, policy, "ROTATOR_LEASE_TTL=2s")
	return &env{t: t, dir: dir, vars: append(vars, extra...)}
}

func (e *env) writePolicy(policy string) {
	e.t.Helper()
	// Write then rename, so a reload never reads half a file.
	tmp := filepath.Join(e.dir, ".policies.yaml.tmp")
	require.NoError(e.t, os.WriteFile(tmp, []byte(policy), 0o600))
	require.NoError(e.t, os.Rename(tmp, filepath.Join(e.dir, "policies.yaml")))
}

// run runs rotator to completion; safe from several goroutines.
func (e *env) run(extra []string, args ...string) result {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Dir = e.dir
	cmd.Env = append(append([]string(nil), e.vars...), extra...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		code = -1
		stderr.WriteString(err.Error())
	}
	return result{code, stdout.String(), stderr.String()}
}

// must runs rotator and requires exit 0.
func (e *env) must(args ...string) result {
	e.t.Helper()
	r := e.run(nil, args...)
	require.Equal(e.t, 0, r.code, "rotator %v:\n%s\n%s", args, r.stdout, r.stderr)
	return r
}

// proc is a long-running rotator process (a daemon).
type proc struct {
	t     *testing.T
	name  string
	cmd   *exec.Cmd
	mu    sync.Mutex
	lines []string
	grow  chan struct{} // closed and replaced whenever a line arrives
	done  chan struct{} // closed when the process has exited
	err   error
}

// start starts rotator with args; its stderr is kept line by line. The
// process is killed at cleanup if the test did not stop it.
func (e *env) start(name string, extra []string, args ...string) *proc {
	e.t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Dir = e.dir
	cmd.Env = append(append([]string(nil), e.vars...), extra...)
	cmd.Stdout = io.Discard
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	p := &proc{t: e.t, name: name, cmd: cmd, grow: make(chan struct{}), done: make(chan struct{})}
	require.NoError(e.t, cmd.Start())
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, sc.Text())
			close(p.grow)
			p.grow = make(chan struct{})
			p.mu.Unlock()
		}
	}()
	go func() {
		p.err = cmd.Wait()
		_ = pw.Close()
		close(p.done)
	}()
	e.t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
		if e.t.Failed() {
			e.t.Logf("%s (pid %d) stderr:\n%s", name, cmd.Process.Pid, p.output())
		}
	})
	return p
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// holder is the name the process takes leases under (host:pid).
func (p *proc) holder() string {
	h, _ := os.Hostname()
	return fmt.Sprintf("%s:%d", h, p.pid())
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.lines, "\n")
}

// waitLine waits for a stderr line containing every one of subs, looking
// from line index from on, and returns the line and its index.
func (p *proc) waitLine(from int, timeout time.Duration, subs ...string) (string, int) {
	p.t.Helper()
	deadline := time.After(timeout)
	for {
		p.mu.Lock()
		for i := from; i < len(p.lines); i++ {
			ok := true
			for _, s := range subs {
				ok = ok && strings.Contains(p.lines[i], s)
			}
			if ok {
				l := p.lines[i]
				p.mu.Unlock()
				return l, i
			}
		}
		from = max(from, len(p.lines))
		grow := p.grow
		p.mu.Unlock()
		select {
		case <-grow:
		case <-p.done:
			// Drain what the pipe still holds, then give up.
			time.Sleep(50 * time.Millisecond)
			p.mu.Lock()
			n := len(p.lines)
			p.mu.Unlock()
			if n > from {
				continue
			}
			p.t.Fatalf("%s exited (%v) before logging %q:\n%s", p.name, p.err, subs, p.output())
		case <-deadline:
			p.t.Fatalf("%s did not log %q within %s:\n%s", p.name, subs, timeout, p.output())
		}
	}
}

// lineCount is how many stderr lines the process printed so far.
func (p *proc) lineCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.lines)
}

// signal sends sig to the process.
func (p *proc) signal(sig syscall.Signal) {
	p.t.Helper()
	require.NoError(p.t, p.cmd.Process.Signal(sig))
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *proc) kill() {
	p.t.Helper()
	p.signal(syscall.SIGKILL)
	<-p.done
}

// wait waits for the process to exit and returns its exit code.
func (p *proc) wait(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.t.Fatalf("%s did not exit within %s:\n%s", p.name, timeout, p.output())
	}
	if ee, ok := p.err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	require.NoError(p.t, p.err)
	return 0
}

// startDaemon starts `rotator daemon` on a free loopback port and returns
// it with its base URL once it serves.
func (e *env) startDaemon(name string, extra []string, args ...string) (*proc, string) {
	e.t.Helper()
	p := e.start(name, extra, append([]string{"daemon", "--listen", "127.0.0.1:0"}, args...)...)
	line, _ := p.waitLine(0, 30*time.Second, `"daemon started"`)
	var rec struct {
		Listen string `json:"listen"`
	}
	require.NoError(e.t, json.Unmarshal([]byte(line), &rec), line)
	return p, "http://" + rec.Listen
}

// get fetches url and returns its status and body.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// eventually polls cond every 100ms until it holds or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// query runs one SQL query on dsn and returns its single int.
func queryInt(t *testing.T, dsn, sql string, args ...any) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	defer conn.Close(ctx)
	var n int
	require.NoError(t, conn.QueryRow(ctx, sql, args...).Scan(&n))
	return n
}

// execSQL runs statements on dsn.
func execSQL(t *testing.T, dsn, sql string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql, args...)
	require.NoError(t, err)
}

// published reads the JSON a files store holds at path (under dir/secrets).
func published(t *testing.T, dir, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "secrets", path))
	require.NoError(t, err)
	var m map[string]string
	require.NoError(t, json.Unmarshal(b, &m), string(b))
	return m
}
