package console_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/cmbs/cmbs/internal/testserver"
)

// browser starts Debian's chromium headless for the test (skipped when it
// is not installed, except in CI, where scripts/test.sh installs it) and
// returns a chromedp context; everything is closed on cleanup.
func browser(t *testing.T) context.Context {
	t.Helper()
	path := ""
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("chromium is not installed (scripts/test.sh installs it: apt-get install chromium)")
		}
		t.Skip("chromium is not installed (apt-get install chromium): the console's browser tests do not run")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // root in CI; the pages are our own
		chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1200, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelBrowser := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc()
	})
	// Start the browser now, under no deadline of a single step.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// screenshot saves the page to the test's temp dir.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Errorf("screenshot %s: %v", name, err)
		return
	}
	p := filepath.Join(t.TempDir(), name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Error(err)
	}
	t.Logf("screenshot: %s", p)
	// To look at them after the test: CONSOLE_SCREENSHOTS=DIR keeps a copy.
	if dir := os.Getenv("CONSOLE_SCREENSHOTS"); dir != "" {
		_ = os.WriteFile(filepath.Join(dir, t.Name()+"-"+name+".png"), png, 0o644)
	}
}

// text waits for sel and returns its text.
func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.WaitVisible(sel)); err != nil {
		t.Fatalf("wait for %s: %v", sel, err)
	}
	s, err := chromedp.Run(ctx, chromedp.Text(sel))
	if err != nil {
		t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

func postFile(t *testing.T, url, file string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	if c, body := do(t, "POST", url, string(b)); c != http.StatusOK {
		t.Fatalf("POST %s %s: %d %s", url, file, c, body)
	}
}

// TestBrowserModelListsCMBSKinds: after pyCMBS's category files are
// posted, the console's model page in headless Chromium lists the member
// and message kinds and their actions.
func TestBrowserModelListsCMBSKinds(t *testing.T) {
	ctx := browser(t)
	srv := startConsole(t, testserver.OpenSQLite(t))
	postFile(t, srv.URL+"/-/", "post_category_cmbs_member.json")
	postFile(t, srv.URL+"/-/", "post_category_cmbs_message.json")

	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/console/#/model")); err != nil {
		t.Fatalf("model page: %v", err)
	}
	member := text(t, ctx, `tr[data-category="http://houssem.org/cmbs#member"]`)
	message := text(t, ctx, `tr[data-category="http://houssem.org/cmbs#message"]`)
	screenshot(t, ctx, "model")
	for _, want := range []string{"member", "/cmbs/member/", "start_l1", "check_neighbors"} {
		if !contains(member, want) {
			t.Errorf("member row %q lacks %q", member, want)
		}
	}
	if !contains(message, "/cmbs/message/") {
		t.Errorf("message row %q lacks its location", message)
	}
}

// TestBrowserEventsShowCreatedEntity: with the events page open, an
// entity created through the API appears in the stream, and its row
// links to the entity page, which renders it.
func TestBrowserEventsShowCreatedEntity(t *testing.T) {
	ctx := browser(t)
	srv := startConsole(t, testserver.OpenSQLite(t))
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx,
		chromedp.Navigate(srv.URL+"/console/#/events"),
		chromedp.WaitReady(`body[data-events="open"]`),
	); err != nil {
		t.Fatalf("events page: %v", err)
	}
	createCounter(t, srv.URL, "/counter/seen")
	row := `tr[data-id="/counter/seen"] a`
	if err := chromedp.Do(ctx, chromedp.WaitVisible(row)); err != nil {
		t.Fatalf("event for /counter/seen: %v", err)
	}
	screenshot(t, ctx, "events")
	if err := chromedp.Do(ctx, chromedp.Click(row)); err != nil {
		t.Fatalf("click %s: %v", row, err)
	}
	value := text(t, ctx, "#entity")
	screenshot(t, ctx, "entity")
	if !contains(value, "test.counter.value") || !contains(value, "1") {
		t.Errorf("entity page %q lacks its attribute", value)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// TestBrowserMemberGraph: three members stored (one hosted here, two
// remote, neighbours of it) are drawn as three nodes, the local one
// marked, with a line to each neighbour.
func TestBrowserMemberGraph(t *testing.T) {
	ctx := browser(t)
	srv := startConsole(t, testserver.OpenSQLite(t))
	postFile(t, srv.URL+"/-/", "post_category_cmbs_member.json")
	member := func(id, local string, port int, neighbors ...string) {
		b, _ := json.Marshal(map[string]any{"resources": []any{map[string]any{
			"kind": "http://houssem.org/cmbs#member", "id": id,
			"attributes": map[string]any{"cmbs": map[string]any{"member": map[string]any{
				"local": local, "l1_socket": fmt.Sprintf("tcp://127.0.0.1:%d", port), "neighbors_socket": neighbors}}},
		}}})
		if c, body := do(t, "POST", srv.URL+"/cmbs/member/", string(b)); c != http.StatusCreated && c != http.StatusOK {
			t.Fatalf("POST member %s: %d %s", id, c, body)
		}
	}
	member("alpha", "true", 5010, "tcp://127.0.0.1:6010", "tcp://127.0.0.1:7010")
	member("beta", "false", 6010)
	member("gamma", "false", 7010)

	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/console/#/members"), chromedp.WaitVisible(`#member-graph`)); err != nil {
		t.Fatalf("members page: %v", err)
	}
	type graph struct {
		Nodes  int `json:"nodes"`
		Local  int `json:"local"`
		Remote int `json:"remote"`
		Lines  int `json:"lines"`
	}
	g, err := chromedp.Run(ctx, chromedp.Evaluate[graph](`({nodes: document.querySelectorAll("#member-graph g.node").length,
		local: document.querySelectorAll("#member-graph g.local").length,
		remote: document.querySelectorAll("#member-graph g.remote").length,
		lines: document.querySelectorAll("#member-graph line").length})`))
	if err != nil {
		t.Fatal(err)
	}
	screenshot(t, ctx, "members")
	if g != (graph{Nodes: 3, Local: 1, Remote: 2, Lines: 2}) {
		t.Fatalf("member graph %+v, want 3 nodes (1 local, 2 remote) and 2 lines", g)
	}
}
