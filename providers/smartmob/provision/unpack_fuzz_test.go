package provision

import (
	"archive/tar"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// FuzzUnpack feeds arbitrary bytes to Unpack: it must never panic, every error must be an unpack
// failure, nothing may appear beside the target directory, and after a success every symlink in
// the tree must point inside it (checked lexically and, when it resolves, by the kernel).
func FuzzUnpack(f *testing.F) {
	t := f
	seeds := [][]byte{
		buildZip(t, file("Procfile", "web: x"), entry{name: "d/", kind: tar.TypeDir}, entry{name: "l", kind: tar.TypeSymlink, link: "d"}),
		buildTar(t, file("Procfile", "web: x"), entry{name: "l", kind: tar.TypeSymlink, link: "Procfile"},
			entry{name: "h", kind: tar.TypeLink, link: "Procfile"}),
		gzipped(t, buildTar(t, file("a/b", "c"))),
		buildTar(t, entry{name: "sub/", kind: tar.TypeDir}, entry{name: "x", kind: tar.TypeSymlink, link: "d/.."},
			entry{name: "d", kind: tar.TypeSymlink, link: "sub/.."}),
		buildTar(t, entry{name: "up", kind: tar.TypeSymlink, link: ".."}, file("up/evil", "x")),
		buildZip(t, file("../evil", "x")),
		[]byte("not an archive"),
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		parent := t.TempDir()
		p := filepath.Join(parent, "archive")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(parent, "out")
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		err := Unpack(ctx, p, out, Limits{MaxFiles: 64, MaxBytes: 1 << 20})
		if err != nil && !errors.Is(err, ErrUnpack) {
			t.Fatalf("error %v is not an unpack failure", err)
		}
		entries, rerr := os.ReadDir(parent)
		if rerr != nil {
			t.Fatal(rerr)
		}
		for _, e := range entries {
			if e.Name() != "archive" && e.Name() != "out" {
				t.Fatalf("written outside: %s", e.Name())
			}
		}
		if err != nil {
			return
		}
		realOut, rerr := filepath.EvalSymlinks(out)
		if rerr != nil {
			t.Fatal(rerr)
		}
		werr := filepath.WalkDir(out, func(q string, d fs.DirEntry, err error) error {
			if err != nil || d.Type()&fs.ModeSymlink == 0 {
				return err
			}
			target, err := os.Readlink(q)
			if err != nil {
				return err
			}
			if filepath.IsAbs(target) {
				t.Fatalf("absolute symlink %s -> %s", q, target)
			}
			if rel, _ := filepath.Rel(out, filepath.Join(filepath.Dir(q), target)); rel == ".." || strings.HasPrefix(rel, "../") {
				t.Fatalf("symlink %s -> %s leaves the tree", q, target)
			}
			if real, err := filepath.EvalSymlinks(q); err == nil && real != realOut && !strings.HasPrefix(real, realOut+"/") {
				t.Fatalf("symlink %s resolves to %s, outside", q, real)
			}
			return nil
		})
		if werr != nil {
			t.Fatal(werr)
		}
	})
}
