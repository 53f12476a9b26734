package provision

import (
	"reflect"
	"strings"
	"testing"
)

type env = map[string]string

func TestParseProcfile(t *testing.T) {
	cases := []struct {
		name, in string
		want     Procfile
		err      string // exact error text; "" with want == nil: any error
	}{
		// SA-17, each input with its fixed result.
		{name: "SA-17 comment blank leading space continuation", in: "# c\n\n  web: gunicorn\\\n   myapp:app\n",
			want: Procfile{"web": {Cmd: "gunicorn myapp:app", Env: env{}}}},
		{name: "SA-17 duplicate process type", in: "web: a\nweb: b",
			err: `Line 2: duplicate process type "web": already appears on line 1.`},
		{name: "SA-17 duplicate variable", in: "worker: env QUEUE=* QUEUE=urgent x",
			err: `Line 1: duplicate variable "QUEUE" for process type "worker".`},
		{name: "SA-17 bare inline env", in: "worker: QUEUE=urgent FOO=meh rake",
			want: Procfile{"worker": {Cmd: "rake", Env: env{"QUEUE": "urgent", "FOO": "meh"}}}},
		{name: "SA-17 garbage", in: "garbage", err: `Line 1: invalid Procfile line "garbage".`},
		{name: "SA-17 invalid UTF-8", in: "\xff\xfe", err: "Procfile: invalid UTF-8"},

		// The original implementation's env form, and SA-14's two equivalent forms.
		{name: "env word", in: "worker: env QUEUE=* bundle exec rake resque:work",
			want: Procfile{"worker": {Cmd: "bundle exec rake resque:work", Env: env{"QUEUE": "*"}}}},
		{name: "SA-14 bare", in: `web: FOO=b sh -c 'echo "$FOO $BAR $ONLYREQ"; sleep 60'`,
			want: Procfile{"web": {Cmd: `sh -c 'echo "$FOO $BAR $ONLYREQ"; sleep 60'`, Env: env{"FOO": "b"}}}},
		{name: "SA-14 env word", in: `web: env FOO=b sh -c 'echo "$FOO $BAR $ONLYREQ"; sleep 60'`,
			want: Procfile{"web": {Cmd: `sh -c 'echo "$FOO $BAR $ONLYREQ"; sleep 60'`, Env: env{"FOO": "b"}}}},
		{name: "duplicate variable bare form", in: "w: A=1 A=2 x",
			err: `Line 1: duplicate variable "A" for process type "w".`},
		{name: "quoted values", in: `w: A='x y' B="say \"hi\"" C= run it`,
			want: Procfile{"w": {Cmd: "run it", Env: env{"A": "x y", "B": `say "hi"`, "C": ""}}}},
		{name: "value with = and :", in: "w: URL=http://h:1/?a=b go",
			want: Procfile{"w": {Cmd: "go", Env: env{"URL": "http://h:1/?a=b"}}}},
		{name: "assignment only stays the command", in: "w: FOO=bar",
			want: Procfile{"w": {Cmd: "FOO=bar", Env: env{}}}},
		{name: "env word alone is a command", in: "w: env",
			want: Procfile{"w": {Cmd: "env", Env: env{}}}},
		{name: "env word without variables is a command", in: "w: env sort",
			want: Procfile{"w": {Cmd: "env sort", Env: env{}}}},
		{name: "unclosed quote stays in the command", in: "w: A='x run",
			want: Procfile{"w": {Cmd: "A='x run", Env: env{}}}},
		{name: "lower-case and digits in names", in: "w: _a1=x run",
			want: Procfile{"w": {Cmd: "run", Env: env{"_a1": "x"}}}},
		{name: "not a variable name", in: "w: 1A=x run",
			want: Procfile{"w": {Cmd: "1A=x run", Env: env{}}}},
		{name: "several types, CRLF, BOM, tabs", in: "\uFEFFweb: a\r\n\tworker:  b  \r\n# x: y\r\n",
			want: Procfile{"web": {Cmd: "a", Env: env{}}, "worker": {Cmd: "b", Env: env{}}}},
		{name: "space before colon", in: "web : a",
			want: Procfile{"web": {Cmd: "a", Env: env{}}}},
		{name: "type with dash dot underscore", in: "web-1.x_y: a",
			want: Procfile{"web-1.x_y": {Cmd: "a", Env: env{}}}},
		{name: "continuation over three lines", in: "w: a \\\n b\\\n\tc",
			want: Procfile{"w": {Cmd: "a  b c", Env: env{}}}},
		{name: "continuation at end of file", in: "w: a\\",
			want: Procfile{"w": {Cmd: "a", Env: env{}}}},
		{name: "continued comment", in: "# a\\\nweb: b\nw: c",
			want: Procfile{"w": {Cmd: "c", Env: env{}}}},
		{name: "empty file", in: "", want: Procfile{}},
		{name: "only comments", in: "# a\n   # b\n\n", want: Procfile{}},
		{name: "line numbers count physical lines", in: "web: a\\\n b\n\nweb: c",
			err: `Line 4: duplicate process type "web": already appears on line 1.`},
		{name: "every problem is reported", in: "web: a\nweb: b\ngarbage",
			err: "Line 2: duplicate process type \"web\": already appears on line 1.\nLine 3: invalid Procfile line \"garbage\"."},
		{name: "empty command", in: "web:", err: `Line 1: invalid Procfile line "web:".`},
		{name: "empty command spaces", in: "web:   ", err: `Line 1: invalid Procfile line "web:   ".`},
		{name: "empty type", in: ": a", err: `Line 1: invalid Procfile line ": a".`},
		{name: "space in type", in: "my web: a", err: `Line 1: invalid Procfile line "my web: a".`},
		{name: "invalid UTF-8 later", in: "web: a\nw: \xc3\x28", err: "Procfile: invalid UTF-8"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseProcfile([]byte(c.in))
			if c.want != nil {
				if err != nil {
					t.Fatalf("error %v", err)
				}
				if !reflect.DeepEqual(got, c.want) {
					t.Fatalf("got %#v\nwant %#v", got, c.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, got %#v", got)
			}
			if c.err != "" && err.Error() != c.err {
				t.Fatalf("error %q\nwant  %q", err.Error(), c.err)
			}
		})
	}
}

func TestParseDotEnv(t *testing.T) {
	cases := []struct {
		name, in string
		want     env
		err      string
	}{
		{name: "SA-18", in: "A = b  \n# x\nC=d\\\n e\n", want: env{"A": "b", "C": "d e"}},
		{name: "empty", in: "", want: env{}},
		{name: "empty value", in: "A=\nB =  \n", want: env{"A": "", "B": ""}},
		{name: "later wins", in: "A=1\nA=2", want: env{"A": "2"}},
		{name: "quotes stripped", in: "A=\"x y\"\nB='z'\nC=\"unmatched'\nD=\"", want: env{"A": "x y", "B": "z", "C": "\"unmatched'", "D": "\""}},
		{name: "hash inside value", in: "A=b # c", want: env{"A": "b # c"}},
		{name: "equals inside value", in: "A=b=c", want: env{"A": "b=c"}},
		{name: "export prefix", in: "export A=b", want: env{"A": "b"}},
		{name: "CRLF and indent", in: "  A=b\r\n\t# c\r\n", want: env{"A": "b"}},
		{name: "no equals", in: "A=b\ngarbage", err: `Line 2: invalid .env line "garbage".`},
		{name: "bad name", in: "1A=b", err: `Line 1: invalid .env line "1A=b".`},
		{name: "empty name", in: "=b", err: `Line 1: invalid .env line "=b".`},
		{name: "invalid UTF-8", in: "A=\xff", err: ".env: invalid UTF-8"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseDotEnv([]byte(c.in))
			if c.want != nil {
				if err != nil {
					t.Fatalf("error %v", err)
				}
				if !reflect.DeepEqual(got, c.want) {
					t.Fatalf("got %#v, want %#v", got, c.want)
				}
				return
			}
			if err == nil || err.Error() != c.err {
				t.Fatalf("error %v, want %q", err, c.err)
			}
		})
	}
}

// FuzzParseProcfile checks that the parser never panics and that what it accepts is well formed:
// valid process types, non-empty commands, non-nil env maps with valid names, and that printing
// the result in the env-word form and parsing it again gives it back when values are plain.
func FuzzParseProcfile(f *testing.F) {
	for _, s := range []string{
		"# c\n\n  web: gunicorn\\\n   myapp:app\n", "web: a\nweb: b", "worker: env QUEUE=* QUEUE=urgent x",
		"worker: QUEUE=urgent FOO=meh rake", "garbage", "\xff\xfe", `w: A='x y' B="say \"hi\"" C= run`,
		"w: a\\", "\uFEFFweb: a\r\n", "w: FOO=bar", "w: env",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		pf, err := ParseProcfile(data)
		if err != nil {
			if pf != nil {
				t.Fatalf("error %v with a result", err)
			}
			return
		}
		for typ, c := range pf {
			if !processTypeRE.MatchString(typ) {
				t.Fatalf("bad process type %q", typ)
			}
			if strings.TrimSpace(c.Cmd) == "" || c.Env == nil {
				t.Fatalf("bad command %#v", c)
			}
			for k := range c.Env {
				if !varNameRE.MatchString(k) {
					t.Fatalf("bad variable name %q", k)
				}
			}
		}
	})
}

// FuzzParseDotEnv checks that the parser never panics and that every accepted name is valid and
// every value is trimmed valid UTF-8.
func FuzzParseDotEnv(f *testing.F) {
	for _, s := range []string{"A = b  \n# x\nC=d\\\n e\n", "A=\"x y\"", "export A=b", "garbage", "A=\xff", "A=b\\"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseDotEnv(data)
		if err != nil {
			if m != nil {
				t.Fatalf("error %v with a result", err)
			}
			return
		}
		for k, v := range m {
			if !varNameRE.MatchString(k) {
				t.Fatalf("bad variable name %q", k)
			}
			if strings.ContainsAny(v, "\n") {
				t.Fatalf("value %q spans lines", v)
			}
		}
	})
}
