package bench_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// cpuMeter reads the CPU time spent by this process (the engine or the
// floor, and the bench's own bookkeeping) and by the Postgres cluster
// both sides use (target and state databases: the postmaster, its live
// children, and the children it has reaped, whose time the kernel adds to
// the postmaster's cutime and cstime). CPU per rotation does not move with
// the machine's load as wall time does: it is the work done, wherever it
// ran.
type cpuMeter struct{ postmaster int }

// newCPUMeter finds the postmaster of the cluster behind dsn: the parent
// of the backend serving a connection to it.
func newCPUMeter(ctx context.Context, dsn string) (*cpuMeter, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	var backend int
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&backend); err != nil {
		return nil, err
	}
	pm, err := parentOf(backend)
	if err != nil {
		return nil, fmt.Errorf("the postmaster of backend %d: %w", backend, err)
	}
	return &cpuMeter{postmaster: pm}, nil
}

// cpuSample is one reading: this process, and the cluster.
type cpuSample struct{ self, postgres time.Duration }

func (m *cpuMeter) read() cpuSample {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	s := cpuSample{self: time.Duration(ru.Utime.Nano() + ru.Stime.Nano())}
	s.postgres = procCPU(m.postmaster, true)
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if pp, err := parentOf(pid); err == nil && pp == m.postmaster {
			s.postgres += procCPU(pid, false)
		}
	}
	return s
}

func (s cpuSample) sub(o cpuSample) cpuSample {
	return cpuSample{self: s.self - o.self, postgres: s.postgres - o.postgres}
}

func (s cpuSample) total() time.Duration { return s.self + s.postgres }

// procCPU is a process's user and system time from /proc/PID/stat, with
// its reaped children's when children is set (0 when it has gone).
func procCPU(pid int, children bool) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	// Fields after "(comm) ": state is field 3, utime 14, stime 15,
	// cutime 16, cstime 17 (proc(5)).
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	fields := []int{11, 12}
	if children {
		fields = append(fields, 13, 14)
	}
	var ticks int64
	for _, i := range fields {
		v, _ := strconv.ParseInt(f[i], 10, 64)
		ticks += v
	}
	return time.Duration(ticks) * time.Second / clockTicks
}

// clockTicks is USER_HZ, 100 on Linux (sysconf(_SC_CLK_TCK)).
const clockTicks = 100

func parentOf(pid int) (int, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "PPid:"); ok {
			return strconv.Atoi(strings.TrimSpace(v))
		}
	}
	return 0, fmt.Errorf("no PPid in /proc/%d/status", pid)
}
