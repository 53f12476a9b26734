package basicauth

import (
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// hash returns a cheap bcrypt hash with the given version prefix ("2a", "2b"
// or "2y"); the hash body is the same for every version.
func hash(t *testing.T, password, version string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return "$" + version + string(h[3:])
}

func writeUsers(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name    string
		content string
		want    string // substring of the error
	}{
		{"no colon", "# users\nalice:pw\nbob\n", "line 3: want user:password"},
		{"empty user", "\n:pw\n", "line 2: empty user name"},
		{"space in user", "al ice:pw\n", "line 1: user name"},
		{"empty password", "alice:\n", "line 1: empty password"},
		{"duplicate", "alice:a\nbob:b\n\nalice:c\n", `line 4: duplicate user "alice" (first on line 1)`},
		{"bad bcrypt", "alice:$2b$10$tooshort\n", "line 1: user \"alice\": malformed bcrypt hash"},
		{"only comments", "# nobody\n\n   \n", "no users defined"},
		{"empty", "", "no users defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeUsers(t, tt.content)
			_, err := Load(path)
			if err == nil {
				t.Fatalf("Load: no error, want %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), path) {
				t.Fatalf("Load error = %q, want it to contain %q and the path", err, tt.want)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load(missing) = %v, want a not-exist error", err)
	}
}

func TestMiddleware(t *testing.T) {
	content := strings.Join([]string{
		"# plain and hashed users",
		"alice:wonder:land#1", // password with ':' and '#'
		"  bob:$2a-placeholder",
		"carol:" + hash(t, "c-secret", "2b"),
		"dave:" + hash(t, "d-secret", "2y"),
		"",
	}, "\r\n")
	content = strings.Replace(content, "$2a-placeholder", hash(t, "b-secret", "2a"), 1)
	users, err := Load(writeUsers(t, content))
	if err != nil {
		t.Fatal(err)
	}
	if users.Len() != 4 {
		t.Fatalf("Len = %d, want 4", users.Len())
	}

	srv := httptest.NewServer(users.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, _ := User(r.Context())
		_, _ = io.WriteString(w, "hello "+name)
	})))
	t.Cleanup(srv.Close)

	tests := []struct {
		name       string
		user, pass string
		noAuth     bool
		wantStatus int
		wantBody   string
	}{
		{name: "no credentials", noAuth: true, wantStatus: 401, wantBody: "authentication required"},
		{name: "plain ok", user: "alice", pass: "wonder:land#1", wantStatus: 200, wantBody: "hello alice"},
		{name: "plain wrong", user: "alice", pass: "wonder", wantStatus: 401, wantBody: "invalid credentials"},
		{name: "plain prefix of longer", user: "alice", pass: "wonder:land#12", wantStatus: 401, wantBody: "invalid credentials"},
		{name: "bcrypt 2a ok", user: "bob", pass: "b-secret", wantStatus: 200, wantBody: "hello bob"},
		{name: "bcrypt 2a ok again (cached)", user: "bob", pass: "b-secret", wantStatus: 200, wantBody: "hello bob"},
		{name: "bcrypt 2a wrong after ok", user: "bob", pass: "b-secreT", wantStatus: 401, wantBody: "invalid credentials"},
		{name: "bcrypt 2b ok", user: "carol", pass: "c-secret", wantStatus: 200, wantBody: "hello carol"},
		{name: "bcrypt 2y ok", user: "dave", pass: "d-secret", wantStatus: 200, wantBody: "hello dave"},
		{name: "bcrypt wrong", user: "carol", pass: "d-secret", wantStatus: 401, wantBody: "invalid credentials"},
		{name: "hash is not the password", user: "carol", pass: string(users.creds["carol"].bcrypt), wantStatus: 401, wantBody: "invalid credentials"},
		{name: "unknown user", user: "mallory", pass: "c-secret", wantStatus: 401, wantBody: "invalid credentials"},
		{name: "empty user", user: "", pass: "x", wantStatus: 401, wantBody: "invalid credentials"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+"/-/", nil)
			if err != nil {
				t.Fatal(err)
			}
			if !tt.noAuth {
				req.SetBasicAuth(tt.user, tt.pass)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status = %d, want %d (body %q)", resp.StatusCode, tt.wantStatus, body)
			}
			if tt.wantStatus == 200 {
				if string(body) != tt.wantBody {
					t.Fatalf("body = %q, want %q", body, tt.wantBody)
				}
				return
			}
			if got := resp.Header.Get("WWW-Authenticate"); got != `Basic realm="cmbs"` {
				t.Errorf("WWW-Authenticate = %q", got)
			}
			if got := resp.Header.Get("Content-Type"); got != "application/json" {
				t.Errorf("Content-Type = %q", got)
			}
			var e struct {
				Error struct {
					Status  int    `json:"status"`
					Message string `json:"message"`
				} `json:"error"`
			}
			if err := json.Unmarshal(body, &e); err != nil {
				t.Fatalf("body %q is not JSON: %v", body, err)
			}
			if e.Error.Status != 401 || e.Error.Message != tt.wantBody {
				t.Fatalf("error = %+v, want status 401 message %q", e.Error, tt.wantBody)
			}
		})
	}
}

// TestUnknownUserCostsLikeKnown checks that an unknown user costs no
// bcrypt comparison but waits about as long as one, so response time does
// not tell unknown users from wrong passwords.
func TestUnknownUserCostsLikeKnown(t *testing.T) {
	users, err := Load(writeUsers(t, "plain:pw\nhashed:"+hash(t, "x", "2b")+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if users.dummy == nil || string(users.dummy) != string(users.creds["hashed"].bcrypt) {
		t.Fatalf("dummy hash not taken from the file")
	}
	if users.bcryptNanos.Load() <= 0 {
		t.Fatal("no bcrypt duration measured at load: unknown users would answer at once")
	}
	before := users.compares.Load()
	if users.Check("nobody", "x") {
		t.Fatal("unknown user accepted with the dummy hash's password")
	}
	if n := users.compares.Load() - before; n != 0 {
		t.Fatalf("an unknown user cost %d bcrypt comparisons, want 0", n)
	}
	if users.Check("hashed", "y") || users.compares.Load()-before != 1 {
		t.Fatalf("a wrong password: %d comparisons, want 1", users.compares.Load()-before)
	}
	plainOnly, err := Load(writeUsers(t, "plain:pw\n"))
	if err != nil {
		t.Fatal(err)
	}
	if plainOnly.dummy != nil || plainOnly.Check("nobody", "pw") {
		t.Fatal("plain-only file: unexpected dummy or unknown user accepted")
	}
}

// A verified pair is remembered for CacheTTL, and only a right pair is.
func TestVerifiedPairsAreCachedBriefly(t *testing.T) {
	users, err := Load(writeUsers(t, "u:"+hash(t, "right", "2b")+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1000, 0)
	users.now = func() time.Time { return now }
	before := users.compares.Load()
	for i := 0; i < 5; i++ {
		if !users.Check("u", "right") {
			t.Fatal("right password refused")
		}
		if users.Check("u", "wrong") {
			t.Fatal("wrong password accepted")
		}
	}
	if n := users.compares.Load() - before; n != 6 {
		t.Fatalf("%d comparisons, want 6 (one for the right password, five for the wrong)", n)
	}
	now = now.Add(DefaultCacheTTL)
	if !users.Check("u", "right") || users.compares.Load()-before != 7 {
		t.Fatal("the cached pair did not expire after CacheTTL")
	}
	// The cache is bounded: many users' pairs do not grow it past maxCached.
	for i := 0; i < 2*maxCached; i++ {
		users.remember(pairKey("u"+strconv.Itoa(i), "p"))
	}
	if n := len(users.verified); n > maxCached {
		t.Fatalf("cache holds %d pairs, want at most %d", n, maxCached)
	}
}

// clientFrom is an HTTP client whose connections come from the loopback
// address ip, so the server sees a different source per client.
func clientFrom(t *testing.T, ip string) *http.Client {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 10 * time.Second}
	tr := &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 64}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// get sends one authenticated request and returns its status and
// Retry-After header; it may run on any goroutine.
func get(t *testing.T, c *http.Client, url, user, pass string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Error(err)
		return 0, ""
	}
	req.SetBasicAuth(user, pass)
	resp, err := c.Do(req)
	if err != nil {
		t.Error(err)
		return 0, ""
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Retry-After")
}

// A flood of failed authentications from one source costs at most the
// burst of bcrypt comparisons, is answered 429 with Retry-After beyond it,
// and does not stop a valid user from being served — from another source,
// or from the same one once verified.
func TestFailedAuthenticationFloodIsLimited(t *testing.T) {
	users, err := Load(writeUsers(t, "valid:"+hash(t, "right", "2b")+"\nother:"+hash(t, "x", "2b")+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	// A stopped clock: no attempt is earned back during the test.
	var now atomic.Int64
	now.Store(1000)
	users.now = func() time.Time { return time.Unix(now.Load(), 0) }
	srv := httptest.NewServer(users.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})))
	t.Cleanup(srv.Close)
	attacker, user := clientFrom(t, "127.0.0.2"), clientFrom(t, "127.0.0.1")
	before := users.compares.Load()

	const flood, workers = 400, 16
	var mu sync.Mutex
	statuses := map[int]int{}
	retryAfter := ""
	var wg sync.WaitGroup
	next := make(chan int)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				name := []string{"valid", "other", "nobody"}[i%3]
				status, retry := get(t, attacker, srv.URL, name, "guess"+strconv.Itoa(i))
				mu.Lock()
				statuses[status]++
				if status == http.StatusTooManyRequests {
					retryAfter = retry
				}
				mu.Unlock()
			}
		}()
	}
	served := 0
	for i := 0; i < flood; i++ {
		next <- i
		if i%20 == 0 && first(get(t, user, srv.URL, "valid", "right")) == http.StatusOK {
			served++
		}
	}
	close(next)
	wg.Wait()

	if served != flood/20 {
		t.Errorf("the valid user was served %d times of %d during the flood", served, flood/20)
	}
	if statuses[http.StatusUnauthorized] != DefaultFailureBurst || statuses[http.StatusTooManyRequests] != flood-DefaultFailureBurst {
		t.Errorf("flood answers %v, want %d × 401 then 429", statuses, DefaultFailureBurst)
	}
	if retryAfter != "1" {
		t.Errorf("Retry-After %q, want 1 (one attempt a second)", retryAfter)
	}
	// The flood's bcrypt comparisons are bounded by the burst (unknown
	// users cost none); the valid user's cost one.
	if n := users.compares.Load() - before; n > DefaultFailureBurst+1 {
		t.Errorf("%d bcrypt comparisons, want at most %d", n, DefaultFailureBurst+1)
	}
	// The valid user, verified, is served from the flooded source too; a
	// new pair from there is refused until an attempt is earned back.
	if s, _ := get(t, attacker, srv.URL, "valid", "right"); s != http.StatusOK {
		t.Errorf("verified user from the flooded source: %d", s)
	}
	if s, _ := get(t, attacker, srv.URL, "other", "x"); s != http.StatusTooManyRequests {
		t.Errorf("unverified user from the flooded source: %d, want 429", s)
	}
	now.Add(int64(DefaultFailureInterval / time.Second))
	if s, _ := get(t, attacker, srv.URL, "other", "x"); s != http.StatusOK {
		t.Errorf("after one interval: %d, want 200", s)
	}
}

func first(status int, _ string) int { return status }

func TestSourceKey(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:5000":                      "127.0.0.1",
		"[::ffff:10.0.0.1]:80":                "10.0.0.1",
		"[2001:db8:1:2:3:4:5:6]:443":          "2001:db8:1:2::/64",
		"[2001:db8:1:2:ffff:ffff:ffff:1]:443": "2001:db8:1:2::/64",
		"not an address":                      "not an address",
	} {
		if got := sourceKey(in); got != want {
			t.Errorf("sourceKey(%q) = %q, want %q", in, got, want)
		}
	}
}
