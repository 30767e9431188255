// Package testproc runs the server programs tests talk to (moto_server,
// vault server -dev): in a process group of their own, killed with the
// group at Close and by the kernel if the test binary dies first, their
// output kept for failure messages.
package testproc

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Process is a running server program.
type Process struct {
	name   string
	cmd    *exec.Cmd
	out    *lockedBuffer
	exited chan struct{} // closed when the process has exited
	once   sync.Once
}

// Start starts cmd (its Stdout, Stderr and SysProcAttr are set here) and
// returns at once. name is what messages call it.
func Start(name string, cmd *exec.Cmd) (*Process, error) {
	p := &Process{name: name, cmd: cmd, out: &lockedBuffer{}, exited: make(chan struct{})}
	cmd.Stdout = p.out
	cmd.Stderr = p.out
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		_ = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// Exited is closed when the process has exited.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Pid is the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Output returns what the process printed so far.
func (p *Process) Output() string { return p.out.String() }

// Tail returns the last n bytes of the output, for failure messages.
func (p *Process) Tail(n int) string {
	s := p.out.String()
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

// Close kills the process (and anything it started) and waits for it to
// exit. It is safe to call more than once.
func (p *Process) Close() error {
	p.once.Do(func() {
		if p.cmd.Process != nil {
			// The process runs in a group of its own: kill the group, so
			// a child cannot outlive it.
			_ = killGroup(p.cmd.Process.Pid)
			_ = p.cmd.Process.Kill()
		}
	})
	select {
	case <-p.exited:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s (pid %d) did not exit after kill", p.name, p.cmd.Process.Pid)
	}
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func killGroup(pid int) error {
	if pid <= 0 {
		return errors.New("no process")
	}
	return syscall.Kill(-pid, syscall.SIGKILL)
}

// lockedBuffer collects the process's output from two pipes.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf.Len() > 1<<20 { // keep memory bounded on a chatty server
		b.buf.Reset()
	}
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
