package provision

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// unpackIn writes the archive bytes as parent/<name> and unpacks them into parent/out. It returns
// the parent and the error.
func unpackIn(t *testing.T, name string, archive []byte, lim Limits) (string, error) {
	t.Helper()
	parent := t.TempDir()
	p := filepath.Join(parent, name)
	if err := os.WriteFile(p, archive, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return parent, Unpack(ctx, p, filepath.Join(parent, "out"), lim)
}

// outside lists what exists in parent apart from the archive file, out/ and what the test put
// there itself (keep).
func outside(t *testing.T, parent, archive string, keep ...string) []string {
	t.Helper()
	var extra []string
	err := filepath.WalkDir(parent, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(parent, p)
		switch {
		case rel == ".", rel == archive, slices.Contains(keep, rel):
		case rel == "out" || strings.HasPrefix(rel, "out"+string(filepath.Separator)):
		default:
			extra = append(extra, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return extra
}

func readTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	got := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		switch {
		case rel == ".":
		case d.Type()&fs.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			got[rel] = "-> " + l
		case d.IsDir():
			got[rel] = "dir"
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			got[rel] = string(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func TestUnpackFormats(t *testing.T) {
	app := []entry{
		file("Procfile", "web: ./run\n"),
		{name: "bin/", kind: tar.TypeDir},
		{name: "bin/run", body: "#!/bin/sh\necho hi\n", mode: 0o755},
		{name: "current", kind: tar.TypeSymlink, link: "bin"},
		{name: "bin/up", kind: tar.TypeSymlink, link: "../Procfile"},
	}
	tarBytes := buildTar(t, append(app, entry{name: "copy", kind: tar.TypeLink, link: "bin/run"})...)
	want := map[string]string{"Procfile": "web: ./run\n", "bin": "dir", "bin/run": "#!/bin/sh\necho hi\n",
		"current": "-> bin", "bin/up": "-> ../Procfile"}
	wantTar := map[string]string{"copy": "#!/bin/sh\necho hi\n"}
	for k, v := range want {
		wantTar[k] = v
	}
	cases := []struct {
		name, file string
		archive    []byte
		want       map[string]string
	}{
		{"zip", "app.zip", buildZip(t, app...), want},
		{"tar", "app.tar", tarBytes, wantTar},
		{"tar.gz", "app.tar.gz", gzipped(t, tarBytes), wantTar},
		// Recognised by bytes, not names.
		{"zip named .tar", "app.tar", buildZip(t, app...), want},
		{"tar.gz named .zip", "app.zip", gzipped(t, tarBytes), wantTar},
		{"tar without a name", "archive", tarBytes, wantTar},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			parent, err := unpackIn(t, c.file, c.archive, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(parent, "out")
			if got := readTree(t, out); !mapsEqual(got, c.want) {
				t.Fatalf("tree %v\nwant %v", got, c.want)
			}
			fi, err := os.Stat(filepath.Join(out, "bin/run"))
			if err != nil || fi.Mode().Perm()&0o100 == 0 {
				t.Fatalf("bin/run lost its executable bit: %v %v", fi.Mode(), err)
			}
			if extra := outside(t, parent, c.file); len(extra) > 0 {
				t.Fatalf("written outside: %v", extra)
			}
		})
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestUnpackZipBackslashes(t *testing.T) {
	parent, err := unpackIn(t, "a.zip", buildZip(t, file(`bin\run`, "x")), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if got := readTree(t, filepath.Join(parent, "out")); !mapsEqual(got, map[string]string{"bin": "dir", "bin/run": "x"}) {
		t.Fatalf("tree %v", got)
	}
}

func TestUnpackModes(t *testing.T) {
	parent, err := unpackIn(t, "a.tar", buildTar(t,
		entry{name: "locked/", kind: tar.TypeDir, mode: 0o500},
		entry{name: "locked/f", body: "x", mode: 0o444},
		entry{name: "suid", body: "x", mode: 0o4777},
		entry{name: "none", body: "x", mode: 0o1000},
	), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(parent, "out")
	for name, want := range map[string]fs.FileMode{"locked": fs.ModeDir | 0o700, "locked/f": 0o644, "suid": 0o755, "none": 0o600} {
		fi, err := os.Lstat(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		// The umask may only take bits away.
		if got := fi.Mode(); got&^want != 0 || got&(fs.ModeDir|0o600) != want&(fs.ModeDir|0o600) {
			t.Errorf("%s: mode %v, want %v", name, got, want)
		}
	}
}

func TestUnpackLaterEntryWins(t *testing.T) {
	parent, err := unpackIn(t, "a.tar", buildTar(t, file("f", "one"), file("f", "two")), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(parent, "out", "f")); string(b) != "two" {
		t.Fatalf("f = %q", b)
	}
}

// TestUnpackHostile is SA-19 and more: each archive must give an unpack failure and leave nothing
// outside the target directory; a victim file beside it must keep its content.
func TestUnpackHostile(t *testing.T) {
	const victim, victimBody = "victim.txt", "untouched"
	big := strings.Repeat("0", 2<<20)
	type mk func(t *testing.T, parent string) []byte
	abs := func(parent, name string) string { return filepath.Join(parent, name) }
	cases := []struct {
		name string
		lim  Limits
		mk   mk
	}{
		{name: "zip ../evil.txt", mk: func(t *testing.T, _ string) []byte {
			return buildZip(t, file("Procfile", "web: x"), file("../evil.txt", "evil"))
		}},
		{name: "tar ../evil.txt", mk: func(t *testing.T, _ string) []byte {
			return buildTar(t, file("Procfile", "web: x"), file("../evil.txt", "evil"))
		}},
		{name: "zip a/../../evil.txt", mk: func(t *testing.T, _ string) []byte {
			return buildZip(t, file("a/../../evil.txt", "evil"))
		}},
		{name: "zip ..\\evil.txt (Windows separators)", mk: func(t *testing.T, _ string) []byte {
			return buildZip(t, file(`..\evil.txt`, "evil"))
		}},
		{name: "tar dir/.. inside a name", mk: func(t *testing.T, _ string) []byte {
			return buildTar(t, file("a/../b", "x"))
		}},
		{name: "zip absolute path", mk: func(t *testing.T, parent string) []byte {
			return buildZip(t, file(abs(parent, "evil.txt"), "evil"))
		}},
		{name: "tar absolute path", mk: func(t *testing.T, parent string) []byte {
			return buildTar(t, file(abs(parent, "evil.txt"), "evil"))
		}},
		{name: "tar symlink to /etc/passwd", mk: func(t *testing.T, _ string) []byte {
			return buildTar(t, entry{name: "passwd", kind: tar.TypeSymlink, link: "/etc/passwd"})
		}},
		{name: "tar absolute symlink then a file written through it", mk: func(t *testing.T, parent string) []byte {
			return buildTar(t, entry{name: "v", kind: tar.TypeSymlink, link: abs(parent, victim)}, file("v", "evil"))
		}},
		{name: "zip absolute symlink then a file written through it", mk: func(t *testing.T, parent string) []byte {
			return buildZip(t, entry{name: "v", kind: tar.TypeSymlink, link: abs(parent, victim)}, file("v", "evil"))
		}},
		{name: "tar symlink .. then a file below it", mk: func(t *testing.T, _ string) []byte {
			return buildTar(t, entry{name: "up", kind: tar.TypeSymlink, link: ".."}, file("up/evil.txt", "evil"))
		}},
		{name: "tar relative symlink climbing out", mk: func(t *testing.T, _ string) []byte {
			return buildTar(t, entry{name: "a/b", kind: tar.TypeSymlink, link: "../../" + victim})
		}},
		{name: "tar symlinks chained out", mk: func(t *testing.T, _ string) []byte {
			// each is inside lexically; together out/x resolves to out/sub/../.. = the parent.
			return buildTar(t, entry{name: "sub/", kind: tar.TypeDir},
				entry{name: "x", kind: tar.TypeSymlink, link: "d/.."},
				entry{name: "d", kind: tar.TypeSymlink, link: "sub/.."})
		}},
		{name: "tar write through an inside symlink dir", mk: func(t *testing.T, _ string) []byte {
			return buildTar(t, entry{name: "sub/", kind: tar.TypeDir},
				entry{name: "l", kind: tar.TypeSymlink, link: "sub"}, file("l/f", "x"))
		}},
		{name: "tar replace an inside symlink with a file", mk: func(t *testing.T, _ string) []byte {
			return buildTar(t, file("f", "x"), entry{name: "l", kind: tar.TypeSymlink, link: "f"}, file("l", "y"))
		}},
		{name: "tar symlink replacing a directory", mk: func(t *testing.T, _ string) []byte {
			return buildTar(t, entry{name: "d/", kind: tar.TypeDir}, entry{name: "d", kind: tar.TypeSymlink, link: "e"})
		}},
		{name: "tar file replacing a directory", mk: func(t *testing.T, _ string) []byte {
			return buildTar(t, file("d/f", "x"), file("d", "y"))
		}},
		{name: "tar hardlink outside", mk: func(t *testing.T, _ string) []byte {
			return buildTar(t, entry{name: "h", kind: tar.TypeLink, link: "../" + victim}, file("h", "evil"))
		}},
		{name: "tar hardlink absolute", mk: func(t *testing.T, parent string) []byte {
			return buildTar(t, entry{name: "h", kind: tar.TypeLink, link: abs(parent, victim)})
		}},
		{name: "tar hardlink to a symlink", mk: func(t *testing.T, parent string) []byte {
			return buildTar(t, file("f", "x"), entry{name: "s", kind: tar.TypeSymlink, link: "f"},
				entry{name: "h", kind: tar.TypeLink, link: "s"})
		}},
		{name: "tar hardlink to a missing file", mk: func(t *testing.T, _ string) []byte {
			return buildTar(t, entry{name: "h", kind: tar.TypeLink, link: "nothing"})
		}},
		{name: "tar character device", mk: func(t *testing.T, _ string) []byte {
			return buildTar(t, entry{name: "null", kind: tar.TypeChar})
		}},
		{name: "tar FIFO", mk: func(t *testing.T, _ string) []byte {
			return buildTar(t, entry{name: "fifo", kind: tar.TypeFifo})
		}},
		{name: "zip over the byte cap", lim: Limits{MaxBytes: 1 << 20}, mk: func(t *testing.T, _ string) []byte {
			return buildZip(t, file("Procfile", "web: x"), file("bomb", big))
		}},
		{name: "tar.gz over the byte cap in total", lim: Limits{MaxBytes: 3 << 20}, mk: func(t *testing.T, _ string) []byte {
			return gzipped(t, buildTar(t, file("a", big), file("b", big)))
		}},
		{name: "zip over the file cap", lim: Limits{MaxFiles: 3}, mk: func(t *testing.T, _ string) []byte {
			return buildZip(t, file("a", ""), file("b", ""), file("c", ""), file("d", ""))
		}},
		{name: "tar over the file cap", lim: Limits{MaxFiles: 3}, mk: func(t *testing.T, _ string) []byte {
			return buildTar(t, file("a", ""), entry{name: "d/", kind: tar.TypeDir}, file("d/c", ""), file("e", ""))
		}},
		{name: "not an archive", mk: func(t *testing.T, _ string) []byte { return []byte("hello, this is text") }},
		{name: "empty file", mk: func(t *testing.T, _ string) []byte { return nil }},
		{name: "gzip that is not a tar", mk: func(t *testing.T, _ string) []byte {
			return gzipped(t, []byte(strings.Repeat("not a tar ", 100)))
		}},
		{name: "truncated zip", mk: func(t *testing.T, _ string) []byte {
			z := buildZip(t, file("Procfile", "web: x"))
			return z[:len(z)-30]
		}},
		{name: "truncated tar", mk: func(t *testing.T, _ string) []byte {
			return buildTar(t, file("Procfile", strings.Repeat("x", 3000)))[:1024]
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			parent := t.TempDir()
			if err := os.WriteFile(filepath.Join(parent, victim), []byte(victimBody), 0o644); err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(parent, "archive")
			if err := os.WriteFile(p, c.mk(t, parent), 0o600); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err := Unpack(ctx, p, filepath.Join(parent, "out"), c.lim)
			if !errors.Is(err, ErrUnpack) || State(err) != "unpack failure" {
				t.Fatalf("err %v, want an unpack failure", err)
			}
			t.Log(err)
			if extra := outside(t, parent, "archive", victim); len(extra) > 0 {
				t.Fatalf("written outside: %v", extra)
			}
			if b, err := os.ReadFile(filepath.Join(parent, victim)); err != nil || string(b) != victimBody {
				t.Fatalf("victim changed: %q %v", b, err)
			}
		})
	}
}

func TestUnpackCanceled(t *testing.T) {
	parent := t.TempDir()
	p := filepath.Join(parent, "a.tar")
	if err := os.WriteFile(p, buildTar(t, file("Procfile", "web: x")), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := Unpack(ctx, p, filepath.Join(parent, "out"), Limits{})
	if !errors.Is(err, ErrUnpack) || !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v", err)
	}
}

func TestSniff(t *testing.T) {
	ustar := buildTar(t, file("a", "b"))
	v7 := bytes.Clone(ustar[:512])
	copy(v7[257:265], make([]byte, 8)) // drop the magic and version, then fix the checksum
	var sum int
	copy(v7[148:156], "        ")
	for _, c := range v7 {
		sum += int(c)
	}
	copy(v7[148:156], []byte(strings.Repeat("0", 6-len(octal(sum)))+octal(sum)+"\x00 "))
	corrupt := bytes.Clone(v7)
	corrupt[0]++
	cases := []struct {
		name string
		in   []byte
		want string
	}{
		{"zip", buildZip(t, file("a", "b")), "zip"},
		{"empty zip", buildZip(t), "zip"},
		{"gzip", gzipped(t, nil), "gzip"},
		{"ustar", ustar, "tar"},
		{"v7 tar", v7, "tar"},
		{"v7 tar with a bad checksum", corrupt, ""},
		{"zero block", make([]byte, 512), ""},
		{"text", []byte("PK is not enough"), ""},
		{"short", []byte{0x1f}, ""},
	}
	for _, c := range cases {
		if got := sniff(c.in); got != c.want {
			t.Errorf("%s: sniff = %q, want %q", c.name, got, c.want)
		}
	}
}

func octal(n int) string {
	s := ""
	for ; n > 0; n /= 8 {
		s = string(rune('0'+n%8)) + s
	}
	return s
}
