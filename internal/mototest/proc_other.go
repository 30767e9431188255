//go:build unix && !linux

package mototest

import "syscall"

// sysProcAttr puts the server in a process group of its own, so Close can
// kill the group.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
