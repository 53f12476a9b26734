package occi_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// A raw (application/octet-stream) action body goes to providers that take
// streams; any other provider's action answers 415, and the usual checks
// (the entity exists, the action is declared) come first.
func TestStreamActionNeedsAStreamingProvider(t *testing.T) {
	e := newCompat(t, "F1", "F3")
	for _, tc := range []struct {
		name, path string
		status     int
		says       string
	}{
		{"a provider without streams", pathM + "?action=start_l1", http.StatusUnsupportedMediaType, "application/occi+json"},
		{"an undeclared action", pathM + "?action=fly", http.StatusBadRequest, "fly"},
		{"no entity", "/cmbs/member/nope?action=start_l1", http.StatusNotFound, "/cmbs/member/nope"},
		{"no term", pathM + "?action=", http.StatusBadRequest, "action"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "POST", e.srv.URL+tc.path, strings.NewReader("raw bytes"))
			req.Header.Set("Content-Type", "application/octet-stream")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status || !bytes.Contains(body, []byte(`"error"`)) || !bytes.Contains(body, []byte(tc.says)) {
				t.Errorf("status %d, want %d saying %q: %s", resp.StatusCode, tc.status, tc.says, body)
			}
		})
	}
	if calls := e.rec.take(); len(calls) != 0 {
		t.Errorf("the provider was called: %+v", calls)
	}
}
