//go:build !linux

package couchpeer

import "syscall"

// sysProcAttr: only Linux can tie the peer's life to the test binary's.
func sysProcAttr() *syscall.SysProcAttr { return nil }
