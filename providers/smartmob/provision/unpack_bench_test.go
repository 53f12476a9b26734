package provision

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkUnpackManyFiles unpacks a tar of 500 small files six directories deep, the shape of
// a dependency tree (node_modules, site-packages).
func BenchmarkUnpackManyFiles(b *testing.B) {
	var entries []entry
	for i := range 500 {
		entries = append(entries, file(fmt.Sprintf("a/b%d/c/d/e/f/file%d.txt", i%50, i), "x"))
	}
	archive := filepath.Join(b.TempDir(), "a.tar")
	if err := os.WriteFile(archive, buildTar(b, entries...), 0o600); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := range b.N {
		if err := Unpack(context.Background(), archive, filepath.Join(b.TempDir(), fmt.Sprint(i)), Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}
