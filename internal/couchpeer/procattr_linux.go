//go:build linux

package couchpeer

import "syscall"

// sysProcAttr makes the kernel kill the peer if the test binary dies without
// stopping it (a test timeout panics past every cleanup), so no node process
// outlives its tests.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
