package occi_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cmbs/cmbs/internal/testserver"
)

// rawExchange writes raw bytes to the server at base (an http:// URL) on a
// fresh connection and reads one response; the exchange is bounded by a
// deadline.
func rawExchange(t *testing.T, base, raw string) (*http.Response, string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(base, "http://"), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading the response to %.60q: %v", raw, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// The Host header is bounded and must be host[:port]: absolute locations
// are built from it, so a long one would be multiplied by every entity of
// a listing.
func TestHostHeaderIsBoundedAndChecked(t *testing.T) {
	srv := testserver.Start(t, testserver.Options{})
	c := newClient(t, srv.URL)
	for i := 0; i < 20; i++ {
		c.expect("POST", "/compute/", []byte(`{"resources":[{"kind":"`+computeKind+`"}]}`), 201)
	}
	longest := strings.Repeat("h", 255) + ":65535"
	for _, host := range []string{"example.org", "example.org:8080", "127.0.0.1:1", "[::1]:8090", "[::1]", "my_host", longest} {
		resp, body := rawExchange(t, srv.URL, "GET /compute/ HTTP/1.1\r\nHost: "+host+"\r\nAccept: application/occi+json\r\n\r\n")
		if resp.StatusCode != 200 {
			t.Fatalf("Host %q: status %d: %s", host, resp.StatusCode, body)
		}
		var list struct {
			Locations []any `json:"X-OCCI-Location"`
		}
		if err := json.Unmarshal([]byte(body), &list); err != nil {
			t.Fatal(err)
		}
		locs := list.Locations
		if len(locs) != 20 || !strings.HasPrefix(locs[0].(string), "http://"+host+"/compute/") {
			t.Fatalf("Host %q: locations %v", host, locs)
		}
	}
	for _, host := range []string{
		longest + "5", strings.Repeat("h", 256) + ":1", strings.Repeat("a", 100000),
		"evil.example/x", "a b", "a@b", "[::1", "[zz]:1", "[::1]x", "h:port", "h:65536", "h:", ":80", "h:-1", "%41",
	} {
		resp, body := rawExchange(t, srv.URL, "GET /compute/ HTTP/1.1\r\nHost: "+host+"\r\nAccept: application/occi+json\r\n\r\n")
		if resp.StatusCode != 400 || !strings.Contains(body, "Host") {
			t.Errorf("Host %.40q: status %d, want 400 naming Host: %.200s", host, resp.StatusCode, body)
		}
		if len(body) > 1000 {
			t.Errorf("Host %.40q: the error is %d bytes", host, len(body))
		}
	}
}

// An HTTP/1.0 request without Host gets locations on the address it
// connected to, not "http:///…".
func TestHTTP10WithoutHostUsesTheConnectedAddress(t *testing.T) {
	srv := testserver.Start(t, testserver.Options{})
	body := `{"resources":[{"kind":"` + computeKind + `","id":"old"}]}`
	resp, got := rawExchange(t, srv.URL, "POST /compute/ HTTP/1.0\r\nContent-Type: application/occi+json\r\nContent-Length: "+
		strconv.Itoa(len(body))+"\r\n\r\n"+body)
	if resp.StatusCode != 201 {
		t.Fatalf("status %d: %s", resp.StatusCode, got)
	}
	if loc := resp.Header.Get("Location"); loc != srv.URL+"/compute/old" {
		t.Fatalf("Location %q, want %q", loc, srv.URL+"/compute/old")
	}
}
