package main

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// The embedded pyCMBS files are copies of testdata/pycmbs (go:embed cannot
// reach it): they must not drift apart.
func TestEmbeddedFilesMatchTestdata(t *testing.T) {
	names, err := fs.Glob(pycmbsFiles, "pycmbs/*.json")
	if err != nil || len(names) == 0 {
		t.Fatalf("no embedded files (%v)", err)
	}
	for _, name := range names {
		embedded, err := pycmbsFiles.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		original, err := os.ReadFile(filepath.Join("..", "..", "testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(embedded, original) {
			t.Errorf("%s differs from testdata/%s", name, name)
		}
	}
}
