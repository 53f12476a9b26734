package main

import (
	"runtime"
	"runtime/debug"

	"github.com/cmbs/cmbs/occi"
)

// versionRequest is parseConfig's answer to --version: run prints the
// version and exits 0.
type versionRequest struct{}

func (versionRequest) Error() string { return "version requested" }

// versionLine is what --version prints: the one version (occi.Version, also
// in every Server header and in /-/status), the OCCI version it speaks, and
// what the build knows of itself (Go version, VCS revision when go build
// stamped one).
func versionLine() string {
	s := "cmbsd " + occi.Version + " (OCCI 1.2, " + runtime.Version()
	if info, ok := debug.ReadBuildInfo(); ok {
		var rev, modified string
		for _, kv := range info.Settings {
			switch kv.Key {
			case "vcs.revision":
				rev = kv.Value
			case "vcs.modified":
				modified = kv.Value
			}
		}
		if rev != "" {
			if len(rev) > 12 {
				rev = rev[:12]
			}
			s += ", revision " + rev
			if modified == "true" {
				s += " with local changes"
			}
		}
	}
	return s + ")"
}
