package occi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cmbs/cmbs/internal/testserver"
	"github.com/cmbs/cmbs/occi"
	"github.com/cmbs/cmbs/occi/model"
	"github.com/cmbs/cmbs/providers"
)

// rawExchange writes raw bytes to the server at base (an http:// URL) on a
// fresh connection and reads one response; the exchange is bounded by a
// deadline.
func rawExchange(t *testing.T, base, raw string) (*http.Response, string) {
	t.Helper()
	return rawExchangeClose(t, base, raw, false)
}

// rawExchangeClose is rawExchange that, when closeWrite is set, half-closes
// the connection after writing: the server sees the end of the stream.
func rawExchangeClose(t *testing.T, base, raw string, closeWrite bool) (*http.Response, string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(base, "http://"), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	// The server may answer (and close) before it has read everything.
	_, _ = io.WriteString(conn, raw)
	if closeWrite {
		_ = conn.(*net.TCPConn).CloseWrite()
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
		"evil.example/x", "a b", "a@b", "[::1", "[zz]:1", "[fe80::1%25eth0]:80", "[::1]:", "[::1]x", "h:port", "h:65536", "h:", ":80", "h:-1", "%41",
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

// Errors in a request body are the client's: a malformed chunked encoding
// or a body cut short is 400, a body that stops arriving 408, a body over
// the limit 413 — declared in Content-Length, refused before it is read.
func TestBodyErrorsAreClientErrors(t *testing.T) {
	srv := testserver.Start(t, testserver.Options{MaxBodyBytes: 4096, BodyIdleTimeout: 200 * time.Millisecond})
	head := "POST /compute/ HTTP/1.1\r\nHost: h\r\nContent-Type: application/occi+json\r\n"
	chunked := head + "Transfer-Encoding: chunked\r\n\r\n"
	var trailers strings.Builder
	for i := 0; i < 5000; i++ {
		trailers.WriteString("X-T" + strconv.Itoa(i) + ": v\r\n")
	}
	for _, tc := range []struct {
		name, raw string
		status    int
		says      string
		closeAt   bool // half-close after writing: the client sends no more
	}{
		{"chunk size not hex", chunked + "zz\r\n{}\r\n0\r\n\r\n", 400, "chunk", false},
		{"negative chunk size", chunked + "-1\r\n{}\r\n0\r\n\r\n", 400, "chunk", false},
		{"oversized chunk extension", chunked + "2;" + strings.Repeat("x", 100000) + "\r\n{}\r\n0\r\n\r\n", 400, "read", false},
		{"thousands of trailers", chunked + "2\r\n{}\r\n0\r\n" + trailers.String() + "\r\n", 400, "trailer", false},
		{"chunked body over the limit", chunked + "2000\r\n" + strings.Repeat(" ", 0x2000) + "\r\n0\r\n\r\n", 413, "4096 bytes", false},
		{"declared length over the limit", head + "Content-Length: 1000000000\r\n\r\n", 413, "--max-body", false},
		{"declared length over the limit, expecting 100-continue", head + "Expect: 100-continue\r\nContent-Length: 5000\r\n\r\n", 413, "4096 bytes", false},
		{"body stops arriving", head + "Content-Length: 100\r\n\r\n{\"resources\":", 408, "stopped arriving", false},
		{"body cut short", head + "Content-Length: 100\r\n\r\n{\"resources\":", 400, "ended before", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := rawExchangeClose(t, srv.URL, tc.raw, tc.closeAt)
			if resp.StatusCode != tc.status || !strings.Contains(body, tc.says) {
				t.Fatalf("status %d, want %d saying %q: %s", resp.StatusCode, tc.status, tc.says, body)
			}
		})
	}
}

// slowAction is a provider whose actions outlast the body idle timeout,
// and report whether their context was still alive at the end.
type slowAction struct {
	recProvider
	wait time.Duration
}

func (p slowAction) Action(ctx context.Context, _ *model.Entity, _ providers.Invocation) (any, error) {
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(p.wait):
		return map[string]any{"alive": true}, nil
	}
}

// The body's read deadlines bound reading the body, not the request: a
// handler that runs longer than the idle timeout after reading it keeps
// its context and answers.
func TestBodyDeadlineEndsWithTheBody(t *testing.T) {
	const idle = 100 * time.Millisecond
	rec := &recorder{}
	srv := testserver.Start(t, testserver.Options{BodyIdleTimeout: idle, Register: func(reg *providers.Registry, _ *occi.Server) error {
		for _, name := range []string{"cmbs_member", "cmbs_message"} {
			if err := reg.Register(name, slowAction{recProvider{name: name, r: rec}, 5 * idle}); err != nil {
				return err
			}
		}
		return nil
	}})
	c := newClient(t, srv.URL)
	c.expect("POST", "/-/", fixture(t, "readme/post_category_cmbs_member.json"), 200)
	c.expect("PUT", "/-/", fixture(t, "readme/put_provider_cmbs_member.json"), 200)
	c.expect("POST", "/cmbs/member/", fixture(t, "readme/post_member.json"), 201)
	r := c.expect("POST", "/cmbs/member/996ad860-2a9a-504f-8861-aeafd0b2ae29?action=start_l1", []byte(`{"attributes":{}}`), 200)
	if !strings.Contains(string(r.body), "alive") {
		t.Fatalf("action result: %s", r.body)
	}
}

// A JSON syntax error names where it is.
func TestJSONSyntaxErrorNamesLineAndColumn(t *testing.T) {
	srv := testserver.Start(t, testserver.Options{})
	c := newClient(t, srv.URL)
	for body, want := range map[string]string{
		"{\n  \"resources\": [\n    {\"kind\": x}\n  ]\n}": "line 3, column 14",
		"\n\n{\"resources\": [\n":                          "line 4, column 1",
		"{\"title\": \"é\", }":                             "line 1, column 16",
		"{\"resources\": []}\n{}":                          "line 2, column 1",
	} {
		r := c.expect("POST", "/compute/", []byte(body), 400)
		if !strings.Contains(string(r.body), want) {
			t.Errorf("%q: %s, want it to say %q", body, r.body, want)
		}
	}
}

// A path that decodes to invalid UTF-8 or hides a '/' as %2F is refused
// before it reaches a store, whatever the method.
func TestPathMustDecodeToCleanSegments(t *testing.T) {
	srv := testserver.Start(t, testserver.Options{})
	c := newClient(t, srv.URL)
	for _, p := range []string{"/compute/%FF%FE", "/compute/a%2Fb", "/compute/a%2fb", "/compute%2F"} {
		for _, m := range []string{"GET", "PUT", "POST", "DELETE"} {
			r := c.do(m, p, []byte(`{"resources":[{"kind":"`+computeKind+`"}]}`))
			if r.status != 400 || !strings.Contains(string(r.body), "path") {
				t.Errorf("%s %s: %d %s, want 400 naming the path", m, p, r.status, r.body)
			}
		}
	}
}
