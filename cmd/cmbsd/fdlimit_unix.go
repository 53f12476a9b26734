//go:build unix

package main

import "syscall"

// openFileLimit returns the process's soft RLIMIT_NOFILE. The Go runtime
// has already raised it to the hard limit at start (since Go 1.19, on
// Unix), so this is the most descriptors cmbsd can have open.
func openFileLimit() (uint64, error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, err
	}
	return uint64(rl.Cur), nil // unlimited is a huge number: zmqConnQuota caps it
}
