//go:build unix && !linux

package testproc

import "syscall"

// sysProcAttr puts the process in a process group of its own, so Close can
// kill the group.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
