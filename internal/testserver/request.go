package testserver

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"
	"time"
)

// Request sends one OCCI JSON request (Content-Type and Accept
// application/occi+json) that must be answered within timeout, and returns
// the status and the body. A request that gets no response fails the test.
func Request(t testing.TB, timeout time.Duration, method, url string, body []byte) (int, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/occi+json")
	req.Header.Set("Accept", "application/occi+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}
