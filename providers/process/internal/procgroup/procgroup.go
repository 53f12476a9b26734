// Package procgroup signals the process groups that the process engine
// and the supervisor start their commands in (Setpgid), so that a stop
// reaches every process a command forked, not only the leader.
package procgroup

import (
	"errors"
	"syscall"
)

// Signal signals the process group pgid; a group that is gone is not an
// error, and a pgid <= 0 (no process was started) signals nothing.
func Signal(pgid int, sig syscall.Signal) error {
	if pgid <= 0 {
		return nil
	}
	if err := syscall.Kill(-pgid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	return nil
}
