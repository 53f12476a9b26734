package provision

import (
	"slices"
	"testing"
)

func TestEnviron(t *testing.T) {
	cases := []struct {
		name   string
		base   []string
		layers []map[string]string
		want   []string
	}{
		// SA-14's rule: base < .env < Procfile inline env < request env.
		{name: "SA-14 precedence",
			base: []string{"PATH=/bin", "FOO=base", "BAR=base", "ONLYREQ=base"},
			layers: []map[string]string{
				{"BAR": "fromenvfile", "FOO": "a"}, // .env
				{"FOO": "b"},                       // Procfile
				{"FOO": "c", "ONLYREQ": "r"},       // request
			},
			want: []string{"BAR=fromenvfile", "FOO=c", "ONLYREQ=r", "PATH=/bin"}},
		{name: "base only, duplicates: last wins, no '=' dropped",
			base: []string{"B=1", "A=x=y", "B=2", "JUNK", "=nokey"},
			want: []string{"A=x=y", "B=2"}},
		{name: "nil layers and empty values",
			base:   nil,
			layers: []map[string]string{nil, {"E": ""}},
			want:   []string{"E="}},
		{name: "keys exec could not pass are dropped",
			layers: []map[string]string{{"": "x", "A=B": "x", "N\x00": "x", "V": "a\x00b", "OK": "1"}},
			want:   []string{"OK=1"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := Environ(c.base, c.layers...); !slices.Equal(got, c.want) {
				t.Fatalf("got %q, want %q", got, c.want)
			}
		})
	}
}

func TestMinimalBase(t *testing.T) {
	t.Setenv("PATH", "")
	if got, want := MinimalBase("/h"), []string{"PATH=" + DefaultPath, "HOME=/h", "LANG=C.UTF-8"}; !slices.Equal(got, want) {
		t.Fatalf("got %q", got)
	}
}
