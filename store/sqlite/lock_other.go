//go:build !unix

package sqlite

import "os"

// lockFile is only implemented on Unix; elsewhere a second Store on the
// same file is not detected.
func lockFile(path string) (*os.File, error) {
	return os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
}
