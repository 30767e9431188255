package testproc

import "syscall"

// sysProcAttr puts the process in a process group of its own (so Close can
// kill the group) and has the kernel kill it if the test binary dies first.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
