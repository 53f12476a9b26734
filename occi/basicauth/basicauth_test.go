package basicauth

import (
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

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

// TestUnknownUserCostsLikeKnown checks that an unknown user is compared
// against a bcrypt hash when the file has one, so response time does not
// tell unknown users from wrong passwords.
func TestUnknownUserCostsLikeKnown(t *testing.T) {
	users, err := Load(writeUsers(t, "plain:pw\nhashed:"+hash(t, "x", "2b")+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if users.dummy == nil || string(users.dummy) != string(users.creds["hashed"].bcrypt) {
		t.Fatalf("dummy hash not taken from the file")
	}
	if users.Check("nobody", "x") {
		t.Fatal("unknown user accepted with the dummy hash's password")
	}
	plainOnly, err := Load(writeUsers(t, "plain:pw\n"))
	if err != nil {
		t.Fatal(err)
	}
	if plainOnly.dummy != nil || plainOnly.Check("nobody", "pw") {
		t.Fatal("plain-only file: unexpected dummy or unknown user accepted")
	}
}
