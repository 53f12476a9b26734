package provision

import "errors"

// Sentinel errors. Every error Provision returns wraps exactly one of them (and, when the context
// ended the work, ctx.Err() as well); State maps it to the supervisor state name.
var (
	// ErrDownload: the archive could not be fetched (HTTP error, text/HTML answer, over the size
	// cap, timeout, connection failure). State "download failure".
	ErrDownload = errors.New("download failure")
	// ErrUnpack: the archive is not a zip/tar/tar.gz, is corrupt, or is unsafe (absolute names,
	// "..", links leaving the tree, writes through links, device files, over the caps).
	// State "unpack failure".
	ErrUnpack = errors.New("unpack failure")
	// ErrNoProcfile: the source tree has no Procfile, or its Procfile or .env cannot be parsed.
	// State "no procfile".
	ErrNoProcfile = errors.New("no procfile")
	// ErrUnknownProcessType: the Procfile has no entry for the requested process type.
	// State "unknown process type".
	ErrUnknownProcessType = errors.New("unknown process type")
)

// State maps an error from Provision (or Fetch, Unpack) to the supervisor state name:
// "download failure", "unpack failure", "no procfile" or "unknown process type". It returns ""
// for nil or for an error that wraps none of the sentinels.
func State(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrDownload):
		return "download failure"
	case errors.Is(err, ErrUnpack):
		return "unpack failure"
	case errors.Is(err, ErrNoProcfile):
		return "no procfile"
	case errors.Is(err, ErrUnknownProcessType):
		return "unknown process type"
	}
	return ""
}
