package console_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/cmbs/cmbs/internal/headless"
	"github.com/cmbs/cmbs/internal/testserver"
)

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
	ctx := headless.Browser(t)
	srv := startConsole(t, testserver.OpenSQLite(t))
	postFile(t, srv.URL+"/-/", "post_category_cmbs_member.json")
	postFile(t, srv.URL+"/-/", "post_category_cmbs_message.json")

	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/console/#/model")); err != nil {
		t.Fatalf("model page: %v", err)
	}
	member := headless.Text(t, ctx, `tr[data-category="http://houssem.org/cmbs#member"]`)
	message := headless.Text(t, ctx, `tr[data-category="http://houssem.org/cmbs#message"]`)
	headless.Screenshot(t, ctx, "model")
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
	ctx := headless.Browser(t)
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
	headless.Screenshot(t, ctx, "events")
	if err := chromedp.Do(ctx, chromedp.Click(row)); err != nil {
		t.Fatalf("click %s: %v", row, err)
	}
	value := headless.Text(t, ctx, "#entity")
	headless.Screenshot(t, ctx, "entity")
	if !contains(value, "test.counter.value") || !contains(value, "1") {
		t.Errorf("entity page %q lacks its attribute", value)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// TestBrowserMemberGraph: three members stored (one hosted here, two
// remote, neighbours of it) are drawn as three nodes, the local one
// marked, with a line to each neighbour.
func TestBrowserMemberGraph(t *testing.T) {
	ctx := headless.Browser(t)
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
	headless.Screenshot(t, ctx, "members")
	if g != (graph{Nodes: 3, Local: 1, Remote: 2, Lines: 2}) {
		t.Fatalf("member graph %+v, want 3 nodes (1 local, 2 remote) and 2 lines", g)
	}
}
