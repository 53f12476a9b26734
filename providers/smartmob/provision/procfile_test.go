package provision

import (
	"reflect"
	"testing"
)

func TestParseProcfileSA17(t *testing.T) {
	pf, err := ParseProcfile([]byte("# c\n\n  web: gunicorn\\\n   myapp:app\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := (Procfile{"web": {Cmd: "gunicorn myapp:app", Env: map[string]string{}}}); !reflect.DeepEqual(pf, want) {
		t.Fatalf("got %#v", pf)
	}
	_, err = ParseProcfile([]byte("web: a\nweb: b"))
	if err == nil || err.Error() != `Line 2: duplicate process type "web": already appears on line 1.` {
		t.Fatalf("got %v", err)
	}
}

func TestParseDotEnvSA18(t *testing.T) {
	env, err := ParseDotEnv([]byte("A = b  \n# x\nC=d\\\n e\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"A": "b", "C": "d e"}; !reflect.DeepEqual(env, want) {
		t.Fatalf("got %v", env)
	}
}
