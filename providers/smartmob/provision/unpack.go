package provision

import (
	"archive/tar"
	"archive/zip"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"
)

// Default unpack caps for a Limits whose fields are zero.
const (
	DefaultMaxFiles      = 10000
	DefaultMaxBytes      = 1 << 30
	maxSymlinkTarget     = 4096
	maxSymlinkResolution = 40 // like the kernel's MAXSYMLINKS
)

// Limits caps what one archive may unpack to. Zero fields take the defaults (10000 entries,
// 1 GiB of file content).
type Limits struct {
	MaxFiles int   // entries of any kind (files, directories, links)
	MaxBytes int64 // total bytes of regular-file content, after decompression
}

// Unpack extracts the archive at path (zip, tar or tar.gz, recognised by their bytes, not names or
// content types) into dir (created if missing). Absolute names, "..", symlinks/hardlinks whose
// target leaves dir, writes through links, device files, too many files or bytes → ErrUnpack,
// and nothing is written outside dir: every file operation goes through an os.Root opened on dir,
// and every symlink is checked again, by resolving it inside dir, once all entries are written.
func Unpack(ctx context.Context, path, dir string, lim Limits) error {
	if lim.MaxFiles <= 0 {
		lim.MaxFiles = DefaultMaxFiles
	}
	if lim.MaxBytes <= 0 {
		lim.MaxBytes = DefaultMaxBytes
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnpack, err)
	}
	defer f.Close()
	head := make([]byte, 512)
	n, err := io.ReadFull(f, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: reading the archive: %v", ErrUnpack, err)
	}
	head = head[:n]
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("%w: %v", ErrUnpack, err)
	}
	format := sniff(head)
	if format == "" {
		return fmt.Errorf("%w: not a zip, tar or tar.gz archive", ErrUnpack)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("%w: %v", ErrUnpack, err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnpack, err)
	}
	defer root.Close()
	x := &extractor{ctx: ctx, root: root, lim: lim}
	switch format {
	case "zip":
		st, err := f.Stat()
		if err != nil {
			return fmt.Errorf("%w: %v", ErrUnpack, err)
		}
		zr, err := zip.NewReader(f, st.Size())
		if err != nil && !errors.Is(err, zip.ErrInsecurePath) { // insecure names are refused per entry
			return fmt.Errorf("%w: zip: %v", ErrUnpack, err)
		}
		if len(zr.File) > lim.MaxFiles {
			return fmt.Errorf("%w: more than %d entries", ErrUnpack, lim.MaxFiles)
		}
		err = x.zip(zr)
		if err != nil {
			return err
		}
	case "gzip":
		gz, err := gzip.NewReader(bufio.NewReader(f))
		if err != nil {
			return fmt.Errorf("%w: gzip: %v", ErrUnpack, err)
		}
		defer gz.Close()
		br := bufio.NewReaderSize(gz, 4096)
		block, err := br.Peek(512)
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("%w: gzip: %v", ErrUnpack, err)
		}
		if sniff(block) != "tar" {
			return fmt.Errorf("%w: the gzip stream does not hold a tar archive", ErrUnpack)
		}
		if err := x.tar(tar.NewReader(br)); err != nil {
			return err
		}
	case "tar":
		if err := x.tar(tar.NewReader(bufio.NewReader(f))); err != nil {
			return err
		}
	}
	return x.checkLinks()
}

// sniff names the archive format from its first bytes: "zip", "gzip", "tar" or "".
func sniff(b []byte) string {
	switch {
	case bytes.HasPrefix(b, []byte("PK\x03\x04")), bytes.HasPrefix(b, []byte("PK\x05\x06")),
		bytes.HasPrefix(b, []byte("PK\x07\x08")):
		return "zip"
	case bytes.HasPrefix(b, []byte{0x1f, 0x8b}):
		return "gzip"
	case isTarHeader(b):
		return "tar"
	}
	return ""
}

// isTarHeader reports whether b starts with a tar header block: the "ustar" magic (POSIX and GNU)
// or, for old V7 archives, a valid header checksum.
func isTarHeader(b []byte) bool {
	if len(b) < 512 {
		return false
	}
	if string(b[257:262]) == "ustar" {
		return true
	}
	field := strings.TrimRight(strings.TrimSpace(string(b[148:156])), "\x00 ")
	want, err := strconv.ParseUint(field, 8, 64)
	if err != nil || field == "" {
		return false
	}
	var sum uint64
	for i, c := range b[:512] {
		if i >= 148 && i < 156 {
			c = ' '
		}
		sum += uint64(c)
	}
	return sum == want && b[0] != 0
}

type extractor struct {
	ctx   context.Context
	root  *os.Root
	lim   Limits
	files int
	bytes int64
	links []string // symlinks created, checked again at the end
}

func (x *extractor) zip(zr *zip.Reader) error {
	for _, zf := range zr.File {
		mode := zf.Mode()
		// Some Windows tools write '\' separators, against the zip spec; read them as '/', so
		// that "..\x" is refused like "../x" rather than becoming an odd file name.
		name := strings.ReplaceAll(zf.Name, `\`, "/")
		var err error
		switch {
		case mode&fs.ModeSymlink != 0:
			var target string
			target, err = zipLinkTarget(zf)
			if err == nil {
				err = x.symlink(name, target)
			}
		case mode.IsDir() || strings.HasSuffix(name, "/"):
			err = x.dir(name, mode)
		case mode.Type() != 0:
			err = x.special(name)
		default:
			err = x.file(name, mode, int64(zf.UncompressedSize64), zf.Open)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func zipLinkTarget(zf *zip.File) (string, error) {
	rc, err := zf.Open()
	if err != nil {
		return "", fmt.Errorf("%w: zip entry %q: %v", ErrUnpack, zf.Name, err)
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxSymlinkTarget+1))
	if err != nil {
		return "", fmt.Errorf("%w: zip entry %q: %v", ErrUnpack, zf.Name, err)
	}
	if len(b) > maxSymlinkTarget {
		return "", fmt.Errorf("%w: zip entry %q: symlink target too long", ErrUnpack, zf.Name)
	}
	return string(b), nil
}

func (x *extractor) tar(tr *tar.Reader) error {
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil && !errors.Is(err, tar.ErrInsecurePath) { // insecure names are refused below
			return fmt.Errorf("%w: tar: %v", ErrUnpack, err)
		}
		switch h.Typeflag {
		case tar.TypeReg, tar.TypeGNUSparse, tar.TypeCont, '\x00':
			err = x.file(h.Name, fs.FileMode(h.Mode).Perm(), h.Size, func() (io.ReadCloser, error) {
				return io.NopCloser(tr), nil
			})
		case tar.TypeDir:
			err = x.dir(h.Name, fs.FileMode(h.Mode).Perm())
		case tar.TypeSymlink:
			err = x.symlink(h.Name, h.Linkname)
		case tar.TypeLink:
			err = x.hardlink(h.Name, h.Linkname)
		case tar.TypeXGlobalHeader:
			continue
		default:
			err = x.special(h.Name)
		}
		if err != nil {
			return err
		}
	}
}

// clean checks an archive entry name and returns it as a slash-separated path relative to the
// root ("" for the root itself).
func clean(name string) (string, error) {
	if strings.ContainsRune(name, 0) {
		return "", fmt.Errorf("%w: entry name %q contains NUL", ErrUnpack, name)
	}
	if strings.HasPrefix(name, "/") {
		return "", fmt.Errorf("%w: absolute entry name %q", ErrUnpack, name)
	}
	var parts []string
	for _, c := range strings.Split(name, "/") {
		switch c {
		case "", ".":
			continue
		case "..":
			return "", fmt.Errorf("%w: entry name %q contains \"..\"", ErrUnpack, name)
		}
		parts = append(parts, c)
	}
	return strings.Join(parts, "/"), nil
}

// begin is common to every entry: cancellation, the entry cap, the name check, and the rule that
// no parent directory of the entry is a symlink (no write through a link).
func (x *extractor) begin(name string) (string, error) {
	if err := x.ctx.Err(); err != nil {
		return "", fmt.Errorf("%w: %w", ErrUnpack, err)
	}
	x.files++
	if x.files > x.lim.MaxFiles {
		return "", fmt.Errorf("%w: more than %d entries", ErrUnpack, x.lim.MaxFiles)
	}
	rel, err := clean(name)
	if err != nil {
		return "", err
	}
	parts := strings.Split(rel, "/")
	for i := 1; i < len(parts); i++ {
		if err := x.notLink(strings.Join(parts[:i], "/"), name); err != nil {
			return "", err
		}
	}
	return rel, nil
}

// notLink fails when p exists and is a symlink.
func (x *extractor) notLink(p, entry string) error {
	fi, err := x.root.Lstat(p)
	if err == nil && fi.Mode()&fs.ModeSymlink != 0 {
		return fmt.Errorf("%w: entry %q would be written through the link %q", ErrUnpack, entry, p)
	}
	return nil
}

// prepare creates rel's parent directories and removes an earlier entry of the same name (a
// later entry wins, as with tar), refusing to replace a directory or a link.
func (x *extractor) prepare(rel, entry string) error {
	if dir := path.Dir(rel); dir != "." {
		if err := x.root.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("%w: entry %q: %v", ErrUnpack, entry, err)
		}
	}
	fi, err := x.root.Lstat(rel)
	if err != nil {
		return nil
	}
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("%w: entry %q would be written through the link %q", ErrUnpack, entry, rel)
	case fi.IsDir():
		return fmt.Errorf("%w: entry %q would replace a directory", ErrUnpack, entry)
	}
	if err := x.root.Remove(rel); err != nil {
		return fmt.Errorf("%w: entry %q: %v", ErrUnpack, entry, err)
	}
	return nil
}

func (x *extractor) dir(name string, mode fs.FileMode) error {
	rel, err := x.begin(name)
	if err != nil || rel == "" {
		return err
	}
	if err := x.notLink(rel, name); err != nil {
		return err
	}
	if err := x.root.MkdirAll(rel, (mode.Perm()|0o700)&0o755); err != nil {
		return fmt.Errorf("%w: entry %q: %v", ErrUnpack, name, err)
	}
	return nil
}

func (x *extractor) file(name string, mode fs.FileMode, size int64, open func() (io.ReadCloser, error)) error {
	rel, err := x.begin(name)
	if err != nil {
		return err
	}
	if rel == "" {
		return fmt.Errorf("%w: a file entry names the root", ErrUnpack)
	}
	left := x.lim.MaxBytes - x.bytes
	if size > left {
		return fmt.Errorf("%w: entry %q: over the %d-byte cap", ErrUnpack, name, x.lim.MaxBytes)
	}
	if err := x.prepare(rel, name); err != nil {
		return err
	}
	src, err := open()
	if err != nil {
		return fmt.Errorf("%w: entry %q: %v", ErrUnpack, name, err)
	}
	defer src.Close()
	dst, err := x.root.OpenFile(rel, os.O_WRONLY|os.O_CREATE|os.O_EXCL, (mode.Perm()|0o600)&0o755)
	if err != nil {
		return fmt.Errorf("%w: entry %q: %v", ErrUnpack, name, err)
	}
	n, err := io.Copy(dst, io.LimitReader(ctxReader{x.ctx, src}, left+1))
	x.bytes += n
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		if cerr := x.ctx.Err(); cerr != nil {
			return fmt.Errorf("%w: %w", ErrUnpack, cerr)
		}
		return fmt.Errorf("%w: entry %q: %v", ErrUnpack, name, err)
	}
	if x.bytes > x.lim.MaxBytes {
		return fmt.Errorf("%w: entry %q: over the %d-byte cap", ErrUnpack, name, x.lim.MaxBytes)
	}
	return nil
}

func (x *extractor) symlink(name, target string) error {
	rel, err := x.begin(name)
	if err != nil {
		return err
	}
	if rel == "" {
		return fmt.Errorf("%w: a symlink entry names the root", ErrUnpack)
	}
	if target == "" || strings.ContainsRune(target, 0) {
		return fmt.Errorf("%w: symlink %q has an invalid target", ErrUnpack, name)
	}
	if path.IsAbs(target) {
		return fmt.Errorf("%w: symlink %q -> %q leaves the tree", ErrUnpack, name, target)
	}
	if j := path.Join(path.Dir(rel), target); j == ".." || strings.HasPrefix(j, "../") {
		return fmt.Errorf("%w: symlink %q -> %q leaves the tree", ErrUnpack, name, target)
	}
	if err := x.prepare(rel, name); err != nil {
		return err
	}
	if err := x.root.Symlink(target, rel); err != nil {
		return fmt.Errorf("%w: symlink %q: %v", ErrUnpack, name, err)
	}
	x.links = append(x.links, rel)
	return nil
}

// hardlink links name to target, a regular file already extracted (tar names hard link targets
// relative to the archive root).
func (x *extractor) hardlink(name, target string) error {
	rel, err := x.begin(name)
	if err != nil {
		return err
	}
	trel, err := clean(target)
	if err != nil || trel == "" {
		return fmt.Errorf("%w: hard link %q -> %q leaves the tree", ErrUnpack, name, target)
	}
	tparts := strings.Split(trel, "/")
	for i := 1; i <= len(tparts); i++ {
		if err := x.notLink(strings.Join(tparts[:i], "/"), name); err != nil {
			return err
		}
	}
	fi, err := x.root.Lstat(trel)
	if err != nil || !fi.Mode().IsRegular() {
		return fmt.Errorf("%w: hard link %q -> %q: the target is not a file in the archive", ErrUnpack, name, target)
	}
	if err := x.prepare(rel, name); err != nil {
		return err
	}
	if err := x.root.Link(trel, rel); err != nil {
		return fmt.Errorf("%w: hard link %q: %v", ErrUnpack, name, err)
	}
	return nil
}

func (x *extractor) special(name string) error {
	if _, err := x.begin(name); err != nil {
		return err
	}
	return fmt.Errorf("%w: entry %q is a device, FIFO or other special file", ErrUnpack, name)
}

// checkLinks resolves every symlink created, following links inside the tree, and fails if one
// leads outside it (a later entry can change where an earlier link points).
func (x *extractor) checkLinks() error {
	for _, l := range x.links {
		target, err := x.root.Readlink(l)
		if err != nil {
			return fmt.Errorf("%w: symlink %q: %v", ErrUnpack, l, err)
		}
		if _, ok := x.resolve(parentParts(l), target, 0); !ok {
			return fmt.Errorf("%w: symlink %q -> %q leaves the tree", ErrUnpack, l, target)
		}
	}
	return nil
}

func parentParts(rel string) []string {
	d := path.Dir(rel)
	if d == "." {
		return nil
	}
	return strings.Split(d, "/")
}

// resolve walks rel from the directory at, following symlinks found in the tree; it returns the
// resolved location and false if the walk leaves the tree (or loops). Components that do not exist
// are taken lexically.
func (x *extractor) resolve(at []string, rel string, depth int) ([]string, bool) {
	if depth > maxSymlinkResolution || path.IsAbs(rel) {
		return nil, false
	}
	cur := append([]string(nil), at...)
	for _, c := range strings.Split(rel, "/") {
		switch c {
		case "", ".":
			continue
		case "..":
			if len(cur) == 0 {
				return nil, false
			}
			cur = cur[:len(cur)-1]
			continue
		}
		next := append(append([]string(nil), cur...), c)
		p := strings.Join(next, "/")
		fi, err := x.root.Lstat(p)
		if err != nil || fi.Mode()&fs.ModeSymlink == 0 {
			cur = next
			continue
		}
		t, err := x.root.Readlink(p)
		if err != nil {
			return nil, false
		}
		var ok bool
		if cur, ok = x.resolve(cur, t, depth+1); !ok {
			return nil, false
		}
	}
	return cur, true
}

// ctxReader stops a copy when the context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
