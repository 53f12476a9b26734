package main

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/cmbs/cmbs/internal/couchpeer"
	"github.com/cmbs/cmbs/internal/loopback"
)

// The record of started layers belongs to the store it describes: a cmbsd
// on CouchDB started in the directory of an embedded store neither reads
// nor rewrites that store's record, so the next embedded start binds its
// layers again.
func TestBinaryLayersRecordStaysWithItsStore(t *testing.T) {
	dir := t.TempDir()
	couchURL := couchpeer.URLForTest(t)
	pycmbs := filepath.Join("..", "..", "testdata", "pycmbs")
	l1 := loopback.FreeEndpoint(t)
	member := []byte(`{"resources":[{"kind":"http://houssem.org/cmbs#member","id":"m",
		"attributes":{"cmbs":{"member":{"l1_socket":"` + l1 + `"}}}}]}`)

	run := func(args ...string) (*process, string) {
		p := startCmbsd(t, dir, nil, append([]string{"--listen", "127.0.0.1:0"}, args...)...)
		return p, "http://" + p.waitListening(t)
	}
	stop := func(p *process) {
		t.Helper()
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if code := p.waitExit(t); code != 0 {
			t.Fatalf("cmbsd exited with %d", code)
		}
	}

	p, url := run()
	for _, f := range []struct{ method, file string }{
		{"POST", "post_category_cmbs_member.json"}, {"PUT", "put_provider_cmbs_member.json"},
	} {
		body, err := os.ReadFile(filepath.Join(pycmbs, f.file))
		if err != nil {
			t.Fatal(err)
		}
		mustCall(t, f.method, url+"/-/", body, 200)
	}
	mustCall(t, "POST", url+"/cmbs/member/", member, 201)
	mustCall(t, "POST", url+"/cmbs/member/m?action=start_l1", []byte("{}"), 200)
	stop(p)

	p, _ = run("--store", couchURL, "--db", couchpeer.DBForTest(t, couchURL))
	stop(p)
	if _, err := os.Stat(filepath.Join(dir, "cmbs-data", "layers.json")); err == nil {
		t.Error("a layers.json was written: the record is kept in the store")
	}

	p, url = run()
	if r := mustCall(t, "POST", url+"/cmbs/member/m?action=start_l1", []byte("{}"), 200); r["changed"] != false {
		t.Fatalf("start_l1 on the embedded store after a CouchDB run in its directory: %v, want it restored and running", r)
	}
	stop(p)
}
