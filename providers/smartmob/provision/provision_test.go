package provision

import (
	"context"
	"errors"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func fsMode(m int64) fs.FileMode { return fs.FileMode(m) & fs.ModePerm }

// archiveServer serves archives from a loopback HTTP server and records the X-Request-Id of
// every request.
type archiveServer struct {
	*httptest.Server
	mu  sync.Mutex
	ids []string
}

func serveArchives(t *testing.T, files map[string][]byte, contentType string) *archiveServer {
	t.Helper()
	s := &archiveServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.ids = append(s.ids, r.Header.Get("X-Request-Id"))
		s.mu.Unlock()
		b, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", contentType)
		_, _ = w.Write(b)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *archiveServer) requestIDs() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.ids)
}

func TestProvisionZip(t *testing.T) {
	zipped := buildZip(t,
		file("Procfile", "web: FOO=b sh -c 'echo \"$FOO $BAR $ONLYREQ\"; sleep 60'\n"),
		file(".env", "BAR=fromenvfile\nFOO=a\n"),
		file("data.txt", "payload-123"),
	)
	srv := serveArchives(t, map[string][]byte{"/app.zip": zipped}, "application/zip")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dir := t.TempDir()
	var states []string
	res, err := Provision(ctx, &Fetcher{}, Request{
		URL: srv.URL + "/app.zip", RequestID: "abc-1", ProcessType: "web", Dir: dir,
		Env:  map[string]string{"FOO": "c", "ONLYREQ": "r"},
		Base: []string{"PATH=/bin", "FOO=base"},
	}, func(s string) { states = append(states, s) })
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"downloading", "unpacking", "processing"}; !slices.Equal(states, want) {
		t.Errorf("progress %v, want %v", states, want)
	}
	if res.Root != filepath.Join(dir, SourceName) {
		t.Errorf("root %q", res.Root)
	}
	if want := `sh -c 'echo "$FOO $BAR $ONLYREQ"; sleep 60'`; res.Cmd != want {
		t.Errorf("cmd %q, want %q", res.Cmd, want)
	}
	if want := []string{"BAR=fromenvfile", "FOO=c", "ONLYREQ=r", "PATH=/bin"}; !slices.Equal(res.Env, want) {
		t.Errorf("env %v, want %v", res.Env, want)
	}
	if ids := srv.requestIDs(); !slices.Equal(ids, []string{"abc-1"}) {
		t.Errorf("server saw X-Request-Id %q", ids)
	}
	if entries, err := os.ReadDir(dir); err != nil || len(entries) != 1 || entries[0].Name() != SourceName {
		t.Errorf("Dir holds %v (%v), want only the source tree", entries, err)
	}
}

func TestProvisionRelativeDir(t *testing.T) {
	srv := serveArchives(t, map[string][]byte{"/a.zip": buildZip(t, file("Procfile", "web: a"))}, "application/zip")
	t.Chdir(t.TempDir())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := Provision(ctx, nil, Request{URL: srv.URL + "/a.zip", ProcessType: "web", Dir: "p"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !filepath.IsAbs(res.Root) || !slices.Contains(res.Env, "HOME="+filepath.Dir(res.Root)) {
		t.Fatalf("root %q, env %q", res.Root, res.Env)
	}
}

func TestProvisionStates(t *testing.T) {
	srv := serveArchives(t, map[string][]byte{
		"/noprocfile.zip": buildZip(t, file("requirements.txt", "x\n")),
		"/web.zip":        buildZip(t, file("Procfile", "web: sleep 1\n")),
		"/garbage":        []byte("this is not an archive at all"),
	}, "application/octet-stream")
	cases := []struct {
		path, ptype string
		sentinel    error
		state       string
	}{
		{"/missing.zip", "web", ErrDownload, "download failure"},
		{"/garbage", "web", ErrUnpack, "unpack failure"},
		{"/noprocfile.zip", "web", ErrNoProcfile, "no procfile"},
		{"/web.zip", "invalid", ErrUnknownProcessType, "unknown process type"},
	}
	for _, c := range cases {
		t.Run(c.state, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err := Provision(ctx, &Fetcher{}, Request{URL: srv.URL + c.path, ProcessType: c.ptype, Dir: t.TempDir()}, nil)
			if !errors.Is(err, c.sentinel) || State(err) != c.state {
				t.Fatalf("err %v (state %q), want %q", err, State(err), c.state)
			}
		})
	}
}

func TestProvisionTarAndDefaults(t *testing.T) {
	tgz := gzipped(t, buildTar(t,
		entry{name: "myapp-1a2b/", kind: '5'},
		file("myapp-1a2b/Procfile", "# app\nworker: env QUEUE=* ./run\nweb: python -m http.server $PORT\n"),
		file("myapp-1a2b/data.txt", "payload-123"),
	))
	srv := serveArchives(t, map[string][]byte{"/app.tgz": tgz}, "application/x-gtar")
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := Provision(ctx, nil, Request{URL: srv.URL + "/app.tgz", ProcessType: "worker", Dir: dir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// One top-level folder and no Procfile above it: the folder is the source root.
	if want := filepath.Join(dir, SourceName, "myapp-1a2b"); res.Root != want {
		t.Errorf("root %q, want %q", res.Root, want)
	}
	if res.Cmd != "./run" || len(res.Procfile) != 2 {
		t.Errorf("cmd %q, procfile %v", res.Cmd, res.Procfile)
	}
	if !slices.Contains(res.Env, "HOME="+dir) || !slices.Contains(res.Env, "LANG=C.UTF-8") ||
		!slices.Contains(res.Env, "QUEUE=*") || !slices.ContainsFunc(res.Env, func(s string) bool { return len(s) > 5 && s[:5] == "PATH=" }) {
		t.Errorf("env %q", res.Env)
	}
	if ids := srv.requestIDs(); !slices.Equal(ids, []string{""}) {
		t.Errorf("X-Request-Id %q sent without one", ids)
	}

	// Provisioning again into the same Dir starts from a clean source tree.
	if err := os.WriteFile(filepath.Join(dir, SourceName, "stale"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Provision(ctx, nil, Request{URL: srv.URL + "/app.tgz", ProcessType: "web", Dir: dir}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, SourceName, "stale")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stale file kept: %v", err)
	}
}

func TestProvisionBadFiles(t *testing.T) {
	srv := serveArchives(t, map[string][]byte{
		"/badprocfile.zip": buildZip(t, file("Procfile", "web: a\nweb: b\n")),
		"/baddotenv.zip":   buildZip(t, file("Procfile", "web: a\n"), file(".env", "garbage\n")),
		"/procfiledir.zip": buildZip(t, entry{name: "Procfile/", kind: '5'}),
		"/unsafe.tar":      buildTar(t, file("Procfile", "web: a\n"), file("../evil", "x")),
	}, "application/octet-stream")
	cases := []struct{ path, state, errHas string }{
		{"/badprocfile.zip", "no procfile", `duplicate process type "web"`},
		{"/baddotenv.zip", "no procfile", `invalid .env line "garbage"`},
		{"/procfiledir.zip", "no procfile", "Procfile"},
		{"/unsafe.tar", "unpack failure", `".."`},
	}
	for _, c := range cases {
		t.Run(c.path, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var states []string
			parent := t.TempDir()
			_, err := Provision(ctx, nil, Request{URL: srv.URL + c.path, ProcessType: "web", Dir: filepath.Join(parent, "p")},
				func(s string) { states = append(states, s) })
			if State(err) != c.state || !strings.Contains(err.Error(), c.errHas) {
				t.Fatalf("err %v (state %q), want %q saying %q", err, State(err), c.state, c.errHas)
			}
			if c.state == "unpack failure" && !slices.Equal(states, []string{"downloading", "unpacking"}) {
				t.Errorf("progress %v", states)
			}
			if entries, _ := os.ReadDir(parent); len(entries) != 1 {
				t.Errorf("written beside Dir: %v", entries)
			}
		})
	}
}

func TestProvisionCanceled(t *testing.T) {
	srv := serveArchives(t, map[string][]byte{"/a.zip": buildZip(t, file("Procfile", "web: a"))}, "application/zip")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Provision(ctx, nil, Request{URL: srv.URL + "/a.zip", ProcessType: "web", Dir: t.TempDir()}, nil)
	if State(err) != "download failure" || !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v", err)
	}
}

// TestProvisionRuns runs the provisioned command as the supervisor will (`sh -c Cmd` in Root with
// Env): SA-14's precedence in both Procfile forms and SA-15's working directory, on a real shell.
func TestProvisionRuns(t *testing.T) {
	forms := map[string]string{
		"bare": `web: FOO=b sh -c 'echo "$FOO $BAR $ONLYREQ"; cat data.txt'`,
		"env":  `web: env FOO=b sh -c 'echo "$FOO $BAR $ONLYREQ"; cat data.txt'`,
	}
	files := map[string][]byte{}
	for name, procfile := range forms {
		files["/"+name+".zip"] = buildZip(t, file("Procfile", procfile+"\n"),
			file(".env", "BAR=fromenvfile\nFOO=a\n"), file("data.txt", "payload-123"))
	}
	srv := serveArchives(t, files, "application/zip")
	for name := range forms {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			res, err := Provision(ctx, nil, Request{URL: srv.URL + "/" + name + ".zip", ProcessType: "web", Dir: t.TempDir(),
				Env: map[string]string{"FOO": "c", "ONLYREQ": "r"}}, nil)
			if err != nil {
				t.Fatal(err)
			}
			cmd := exec.CommandContext(ctx, "sh", "-c", res.Cmd)
			cmd.Dir, cmd.Env = res.Root, res.Env
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			if got, want := string(out), "c fromenvfile r\npayload-123"; got != want {
				t.Fatalf("output %q, want %q", got, want)
			}
		})
	}
}
