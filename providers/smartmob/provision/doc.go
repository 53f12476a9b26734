// Package provision turns a smartmob create request into something a supervisor can run: it
// downloads the app archive (Fetcher, with a timeout and a size cap, forwarding X-Request-Id),
// unpacks it safely (Unpack: zip, tar or tar.gz recognised by their bytes, extracted through an
// os.Root so nothing is written outside the target directory), reads the Procfile (smartmob RFC 1)
// and .env (RFC 2), and builds the command's working directory and environment
// (base < .env < Procfile inline env < request env).
//
// Every error Provision returns wraps exactly one of ErrDownload, ErrUnpack, ErrNoProcfile or
// ErrUnknownProcessType; State maps it to the supervisor state name. The package knows nothing of
// OCCI or HTTP serving; the smartmob provider wires it to the supervisor.
package provision
