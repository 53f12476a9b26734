package provision

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Names inside Request.Dir.
const (
	ArchiveName = "archive" // the downloaded archive
	SourceName  = "src"     // the unpacked source tree
)

// Request is what Provision needs for one process.
type Request struct {
	URL, RequestID, ProcessType string
	Dir                         string            // private directory for this process; archive and source tree go inside
	Env                         map[string]string // the request's env (highest precedence)
	Base                        []string          // the base environment (lowest); nil: a minimal base (PATH, HOME=Dir, LANG=C.UTF-8)
	Limits                      Limits            // unpack caps; zero: the defaults
}

// Result is a provisioned process, ready for `sh -c Cmd` in Root with Env.
type Result struct {
	Root     string   // the source root: cwd for the command
	Cmd      string   // the Procfile command, to run as `sh -c Cmd` in Root
	Env      []string // base < .env < Procfile inline env < request env
	Procfile Procfile
}

// DefaultPath is the PATH of the minimal base environment when cmbsd's own PATH is empty.
const DefaultPath = "/usr/local/bin:/usr/bin:/bin"

// Provision fetches, unpacks, reads Procfile and .env, picks ProcessType. progress (may be nil) is
// called with "downloading", "unpacking", "processing" as it goes. ctx cancels everything (the
// error then also wraps ctx.Err()). f may be nil: a Fetcher with the defaults.
//
// The archive is saved as Dir/archive, unpacked into Dir/src, which is emptied first (a new
// provisioning starts clean), and then removed. Root is absolute even when Dir is not. The source root is Dir/src, or its only entry when that is a
// directory and Dir/src holds no Procfile (archives made of one top-level folder, as GitHub's are).
// A Procfile or .env that does not parse gives ErrNoProcfile with the parser's text.
func Provision(ctx context.Context, f *Fetcher, req Request, progress func(state string)) (Result, error) {
	if progress == nil {
		progress = func(string) {}
	}
	if req.Dir == "" {
		return Result{}, fmt.Errorf("%w: no directory given", ErrDownload)
	}
	dir, err := filepath.Abs(req.Dir)
	if err != nil {
		return Result{}, fmt.Errorf("%w: %v", ErrDownload, err)
	}
	req.Dir = dir
	progress("downloading")
	if err := os.MkdirAll(req.Dir, 0o700); err != nil {
		return Result{}, fmt.Errorf("%w: %v", ErrDownload, err)
	}
	archive := filepath.Join(req.Dir, ArchiveName)
	af, err := os.Create(archive)
	if err != nil {
		return Result{}, fmt.Errorf("%w: %v", ErrDownload, err)
	}
	_, err = f.Fetch(ctx, req.URL, req.RequestID, af)
	if cerr := af.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("%w: %v", ErrDownload, cerr)
	}
	if err != nil {
		return Result{}, err
	}

	progress("unpacking")
	src := filepath.Join(req.Dir, SourceName)
	if err := os.RemoveAll(src); err != nil {
		return Result{}, fmt.Errorf("%w: clearing the old source tree: %v", ErrUnpack, err)
	}
	err = Unpack(ctx, archive, src, req.Limits)
	if rerr := os.Remove(archive); err == nil && rerr != nil {
		err = fmt.Errorf("%w: removing the archive: %v", ErrUnpack, rerr)
	}
	if err != nil {
		return Result{}, err
	}

	progress("processing")
	if err := ctx.Err(); err != nil {
		return Result{}, fmt.Errorf("%w: %w", ErrNoProcfile, err)
	}
	rootDir, err := sourceRoot(src)
	if err != nil {
		return Result{}, err
	}
	root, err := os.OpenRoot(rootDir)
	if err != nil {
		return Result{}, fmt.Errorf("%w: %v", ErrNoProcfile, err)
	}
	defer root.Close()
	data, err := root.ReadFile("Procfile")
	if err != nil {
		return Result{}, fmt.Errorf("%w: %v", ErrNoProcfile, err)
	}
	pf, err := ParseProcfile(data)
	if err != nil {
		return Result{}, fmt.Errorf("%w: %w", ErrNoProcfile, err)
	}
	var dotenv map[string]string
	if data, err := root.ReadFile(".env"); err == nil {
		if dotenv, err = ParseDotEnv(data); err != nil {
			return Result{}, fmt.Errorf("%w: %w", ErrNoProcfile, err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return Result{}, fmt.Errorf("%w: .env: %v", ErrNoProcfile, err)
	}
	cmd, ok := pf[req.ProcessType]
	if !ok {
		return Result{}, fmt.Errorf("%w: %q is not in the Procfile", ErrUnknownProcessType, req.ProcessType)
	}
	base := req.Base
	if base == nil {
		base = MinimalBase(req.Dir)
	}
	return Result{
		Root:     rootDir,
		Cmd:      cmd.Cmd,
		Env:      Environ(base, dotenv, cmd.Env, req.Env),
		Procfile: pf,
	}, nil
}

// MinimalBase is the default base environment: cmbsd's PATH (or DefaultPath), HOME=home and
// LANG=C.UTF-8.
func MinimalBase(home string) []string {
	p := os.Getenv("PATH")
	if p == "" {
		p = DefaultPath
	}
	return []string{"PATH=" + p, "HOME=" + home, "LANG=C.UTF-8"}
}

// sourceRoot picks the directory holding the Procfile (see Provision).
func sourceRoot(src string) (string, error) {
	if _, err := os.Lstat(filepath.Join(src, "Procfile")); err == nil {
		return src, nil
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrNoProcfile, err)
	}
	if len(entries) == 1 && entries[0].IsDir() {
		return filepath.Join(src, entries[0].Name()), nil
	}
	return src, nil
}
