package process_test

import (
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"testing"

	"github.com/cmbs/cmbs/providers/process/internal/processtest"
	"github.com/cmbs/cmbs/store"
)

const usersFile = "alice:wonderland\nbob:builder\n"

// PR-S3: the registry README's curl command, run literally (host and port
// aside), then GET on the Location it answers.
func TestRegistryReadmeCurl(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl is not installed")
	}
	eachStore(t, func(t *testing.T, open func(t *testing.T) store.Store) {
		n := startNode(t, open(t), nodeOptions{users: usersFile})
		out, err := exec.Command("curl", "-sS", "-u", "alice:wonderland", "--dump-header", "-", "-H", "Content-Type: application/json",
			"-X", "POST", "--data", `{"definition": {"exec": "/path/to/executable"}}`, n.url+"/api/process_definition/").CombinedOutput()
		if err != nil {
			t.Fatalf("curl: %v\n%s", err, out)
		}
		head := string(out)
		if !strings.HasPrefix(head, "HTTP/1.1 201") {
			t.Fatalf("curl answer:\n%s", head)
		}
		var loc string
		for _, line := range strings.Split(head, "\r\n") {
			if v, ok := strings.CutPrefix(line, "Location: "); ok {
				loc = v
			}
		}
		u, err := url.Parse(loc)
		if err != nil || u.Host == "" || !strings.HasPrefix(u.Path, "/api/process_definition/") || !strings.HasSuffix(u.Path, "/") {
			t.Fatalf("Location %q", loc)
		}
		id := strings.TrimSuffix(strings.TrimPrefix(u.Path, "/api/process_definition/"), "/")
		got := expect(t, n.as("alice", "wonderland").do("GET", loc, ""), http.StatusOK).json(t)
		want := map[string]any{"definition": map[string]any{"exec": "/path/to/executable"}, "id": id, "resource_uri": "/api/process_definition/" + id + "/"}
		if !jsonEqual(got, want) {
			t.Errorf("GET %s = %v, want %v", loc, got, want)
		}
		// The README's list command.
		out, err = exec.Command("curl", "-sS", "-u", "alice:wonderland", n.url+"/api/process_definition/").CombinedOutput()
		if err != nil || !strings.Contains(string(out), `"total_count":1`) || !strings.Contains(string(out), `"resource_uri":"/api/process_definition/`+id+`/"`) {
			t.Errorf("curl list: %v %s", err, out)
		}
	})
}

// PR-S2, S4, S5, S6, S8 and V8 on the registry API.
func TestRegistryAPI(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(t *testing.T) store.Store) {
		n := startNode(t, open(t), nodeOptions{users: usersFile})
		alice, bob := n.as("alice", "wonderland"), n.as("bob", "builder")
		post := func(c *node, def string) string {
			t.Helper()
			r := expect(t, c.do("POST", "/api/process_definition/", `{"definition":`+def+`}`), http.StatusCreated)
			u, _ := url.Parse(r.header.Get("Location"))
			return u.Path
		}

		// PR-S5: no credentials, or a wrong password.
		for _, c := range []*node{n, n.as("alice", "wrong")} {
			r := expect(t, c.do("GET", "/api/process_definition/", ""), http.StatusUnauthorized)
			if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Basic ") {
				t.Errorf("WWW-Authenticate %q", r.header.Get("WWW-Authenticate"))
			}
		}

		// PR-S2: each user sees their own.
		a1 := post(alice, `{"exec":"cat"}`)
		post(alice, `{"exec":"tr"}`)
		b1 := post(bob, `{"exec":"sort"}`)
		list := expect(t, alice.do("GET", "/api/process_definition/", ""), http.StatusOK).json(t)
		if path(list, "meta", "total_count") != 2.0 || len(list["objects"].([]any)) != 2 {
			t.Errorf("alice's list: %v", list)
		}
		for _, o := range list["objects"].([]any) {
			if o.(map[string]any)["resource_uri"] == b1 {
				t.Errorf("alice sees bob's %s", b1)
			}
		}
		expect(t, alice.do("GET", b1, ""), http.StatusNotFound)
		expect(t, alice.do("PUT", b1, `{"definition":{"exec":"x"}}`), http.StatusNotFound)
		expect(t, alice.do("DELETE", b1, ""), http.StatusNotFound)
		expect(t, bob.do("GET", b1, ""), http.StatusOK)

		// PR-S4: paging.
		post(alice, `{"exec":"wc"}`)
		page := expect(t, alice.do("GET", "/api/process_definition/?limit=2", ""), http.StatusOK).json(t)
		meta := page["meta"].(map[string]any)
		if meta["total_count"] != 3.0 || meta["limit"] != 2.0 || meta["offset"] != 0.0 || meta["previous"] != nil || len(page["objects"].([]any)) != 2 {
			t.Errorf("page 1: %v", page)
		}
		next, _ := meta["next"].(string)
		nu, err := url.Parse(next)
		if err != nil || nu.Path != "/api/process_definition/" || nu.Query().Get("limit") != "2" || nu.Query().Get("offset") != "2" {
			t.Fatalf("next %q", next)
		}
		page2 := expect(t, alice.do("GET", next, ""), http.StatusOK).json(t)
		if len(page2["objects"].([]any)) != 1 || path(page2, "meta", "next") != nil || path(page2, "meta", "previous") == nil {
			t.Errorf("page 2: %v", page2)
		}

		// PR-S6: PUT replaces (204), DELETE (204), then 404.
		expect(t, alice.do("PUT", a1, `{"definition":{"exec":"cat","args":["-n"]}}`), http.StatusNoContent)
		got := expect(t, alice.do("GET", a1, ""), http.StatusOK).json(t)
		if !jsonEqual(got["definition"], map[string]any{"exec": "cat", "argv": []any{"-n"}}) {
			t.Errorf("after PUT: %v", got)
		}
		expect(t, alice.do("DELETE", a1, ""), http.StatusNoContent)
		expect(t, alice.do("GET", a1, ""), http.StatusNotFound)

		// PR-S8: PUT (or DELETE) on the list is 405 and changes nothing.
		r := expect(t, alice.do("PUT", "/api/process_definition/", `{"objects":[{"definition":{"exec":"only"}}]}`), http.StatusMethodNotAllowed)
		if r.header.Get("Allow") == "" {
			t.Error("405 without Allow")
		}
		expect(t, alice.do("DELETE", "/api/process_definition/", ""), http.StatusMethodNotAllowed)
		if c := path(expect(t, alice.do("GET", "/api/process_definition/", ""), http.StatusOK).json(t), "meta", "total_count"); c != 2.0 {
			t.Errorf("after PUT on the list alice has %v", c)
		}

		// Validation applies here too, naming the field.
		r = expect(t, alice.do("POST", "/api/process_definition/", `{"definition":{"exec":"cat","timeout":-5}}`), http.StatusBadRequest)
		if !strings.Contains(string(r.body), "timeout") {
			t.Errorf("timeout error %s", r.body)
		}
		// PR-V8: a registry example with its trailing comma is invalid JSON;
		// without it, it is accepted.
		example := `{"definition": {
    "exec": "/opt/hscal/bin/hscal",
    "application": "hscal",
    "process_type": "single",
    "cwd": "/tmp",
    "environment": {"HSCAL_HOME": "/opt/hscal"},
}}`
		r = expect(t, alice.do("POST", "/api/process_definition/", example), http.StatusBadRequest)
		if !strings.Contains(string(r.body), "invalid JSON") {
			t.Errorf("trailing comma: %s", r.body)
		}
		expect(t, alice.do("POST", "/api/process_definition/", strings.Replace(example, "},\n}}", "}\n}}", 1)), http.StatusCreated)

		// The API's definitions are the OCCI entities: execute one.
		tr := post(alice, processtest.TrDefinition)
		id := strings.TrimSuffix(strings.TrimPrefix(tr, "/api/process_definition/"), "/")
		res := alice.execute("/process/definition/"+id, map[string]any{"input": "xaxbxcx\n"})
		if res["output"] != "abc\n" {
			t.Errorf("execute the API's tr: %v", res)
		}
	})
}
