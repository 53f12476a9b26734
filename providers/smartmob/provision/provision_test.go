package provision

import (
	"context"
	"errors"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
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
