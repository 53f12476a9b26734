//go:build unix

package sqlite

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// lockFile takes an exclusive lock on path+".lock" for the life of the
// Store: the Store's writer goroutine and its document cache assume that
// nothing else writes the database, so a second Store on the same file
// (another cmbsd, or a second Open in this process) is refused instead.
func lockFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		_ = f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("the database is in use by another store (%s.lock is locked)", path)
		}
		return nil, err
	}
	return f, nil
}
