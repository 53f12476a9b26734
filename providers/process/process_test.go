package process_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cmbs/cmbs/providers/process/internal/processtest"
	"github.com/cmbs/cmbs/store"
)

// PR-V1…V7, V9 through the OCCI interface: 400 naming the field.
func TestDefinitionValidation(t *testing.T) {
	n := startNode(t, nil, nodeOptions{})
	for _, tc := range []struct{ name, def, field string }{
		{"PR-V1", `{}`, "exec"},
		{"PR-V2", `{"exec":"cat","argv":"-n"}`, "argv"},
		{"PR-V3", `{"exec":"cat","environment":{"A":1}}`, "environment"},
		{"PR-V4", `{"exec":"cat","input_adapter":{"input_type":"tcp"}}`, "input_type"},
		{"PR-V5", `{"exec":"cat","input_adapter":{"input_type":"file","input_parameters":{"file_type":"stream","stream_name":"STDOUT"}}}`, "stream_name"},
		{"PR-V6", `{"exec":"cat","argv":["${input_file}"],"input_adapter":` + processtest.StdinIn + `}`, "argv"},
		{"PR-V7 zero", `{"exec":"cat","timeout":0}`, "timeout"},
		{"PR-V7 negative", `{"exec":"cat","timeout":-5}`, "timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := expect(t, n.do("POST", "/process/definition/", `{"kind":"http://cmbs.dev/occi/process#definition","attributes":{"process":{"definition":`+tc.def+`}}}`,
				"Content-Type", "application/occi+json"), http.StatusBadRequest)
			if !strings.Contains(string(r.body), tc.field) {
				t.Errorf("error %s does not name %s", r.body, tc.field)
			}
		})
	}
	t.Run("PR-V9 the documentation's spellings", func(t *testing.T) {
		loc := n.createDefinition(`{"exec":"someproc","args":["--quiet","--input","${input_file}"],
			"input_adapter":{"input_type":"file","input_params":{"file_path":"${input_file}"}},
			"output_adapter":{"output_type":"file","output_params":{"file_type":"stream","stream_name":"STDOUT"}}}`)
		def := path(n.entity(loc), "attributes", "process", "definition")
		want := map[string]any{"exec": "someproc", "argv": []any{"--quiet", "--input", "${input_file}"},
			"input_adapter":  map[string]any{"input_type": "file", "input_parameters": map[string]any{"file_path": "${input_file}"}},
			"output_adapter": map[string]any{"output_type": "file", "output_parameters": map[string]any{"file_type": "stream", "stream_name": "STDOUT"}}}
		if !jsonEqual(def, want) {
			t.Errorf("stored %v\nwant %v", def, want)
		}
	})
	t.Run("executions are read-only", func(t *testing.T) {
		expect(t, n.do("POST", "/process/execution/", `{"kind":"http://cmbs.dev/occi/process#execution","attributes":{"process":{"execution":{"status":"succeeded"}}}}`,
			"Content-Type", "application/occi+json"), http.StatusForbidden)
	})
}

// PR-S1 (OCCI side), PR-E1…E13 on both stores, PR-E13 and PR-S7 across a
// restart.
func TestExecute(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(t *testing.T) store.Store) {
		var trLoc, bigLoc string
		var trResult map[string]any
		bigDef := fmt.Sprintf(`{"exec":"printf","argv":[%s],"environment":{"GRÜSSE":"ünïcødé ✓","Z":"%s"},"cwd":"/","process_type":"single","run_on_message":false,
			"input_adapter":{"input_type":"file","input_parameters":{"file_type":"stream","stream_name":"STDIN","nested":{"deep":{"deeper":[1,2,{"x":"y"}]}}}}}`,
			strings.Repeat(`"argument-ünï-✓",`, 200)+`"end"`, strings.Repeat("z", 1000))
		t.Run("first run", func(t *testing.T) {
			n := startNode(t, open(t), nodeOptions{})

			// PR-S1: over 4 KiB, nested, unicode, long argv: stored intact.
			if len(bigDef) < 4096 {
				t.Fatalf("definition is only %d bytes", len(bigDef))
			}
			bigLoc = n.createDefinition(bigDef)
			var posted any
			if err := jsonUnmarshal(bigDef, &posted); err != nil {
				t.Fatal(err)
			}
			if got := path(n.entity(bigLoc), "attributes", "process", "definition"); !jsonEqual(got, posted) {
				t.Errorf("stored definition differs from the posted one:\n%v", got)
			}

			// PR-E1: the README's tr example.
			trLoc = n.createDefinition(processtest.TrDefinition)
			trResult = n.execute(trLoc, map[string]any{"input": "xaxbxcx\n"})
			if trResult["status"] != "succeeded" || trResult["exit_code"] != 0.0 || trResult["output"] != "abc\n" {
				t.Fatalf("tr: %v", trResult)
			}
			exec, _ := trResult["execution"].(string)
			if !strings.HasPrefix(exec, "/process/execution/") {
				t.Fatalf("execution %q", exec)
			}
			for _, k := range []string{"started_at", "finished_at", "duration_ms", "stderr", "truncated"} {
				if _, ok := trResult[k]; !ok {
					t.Errorf("result lacks %s: %v", k, trResult)
				}
			}

			// PR-E13: the execution record answers GET with the result.
			rec := path(n.entity(exec), "attributes", "process", "execution").(map[string]any)
			if rec["status"] != "succeeded" || rec["exit_code"] != 0.0 || rec["output"] != "abc\n" || rec["definition"] != trLoc {
				t.Errorf("execution record %v", rec)
			}

			// PR-E2: file in, file out, binary.
			in := make([]byte, 256)
			for i := range in {
				in[i] = byte(i)
			}
			cp := n.createDefinition(`{"exec":"cp","argv":["${input_file}","${output_file}"],"input_adapter":` + processtest.FileIn + `,"output_adapter":` + processtest.FileOut + `}`)
			res := n.execute(cp, map[string]any{"input_base64": base64.StdEncoding.EncodeToString(in)})
			if res["status"] != "succeeded" || res["output_base64"] != base64.StdEncoding.EncodeToString(in) {
				t.Errorf("cp: %v", res)
			}

			// PR-E3, E4, E5.
			dir := t.TempDir()
			for _, tc := range []struct{ def, input, output string }{
				{`{"exec":"sh","argv":["-c","tr a-z A-Z > \"$0\"","${output_file}"],"input_adapter":` + processtest.StdinIn + `,"output_adapter":` + processtest.FileOut + `}`, "hello", "HELLO"},
				{`{"exec":"cat","argv":["${input_file}"],"input_adapter":` + processtest.FileIn + `,"output_adapter":` + processtest.StdoutOut + `}`, "abc", "abc"},
				{`{"exec":"sh","argv":["-c","printf '%s|%s' \"$FOO\" \"$(pwd)\""],"environment":{"FOO":"bar"},"cwd":"` + dir + `","output_adapter":` + processtest.StdoutOut + `}`, "", "bar|" + dir},
			} {
				res := n.execute(n.createDefinition(tc.def), map[string]any{"input": tc.input})
				if res["status"] != "succeeded" || res["output"] != tc.output {
					t.Errorf("%s: %v, want output %q", tc.def, res, tc.output)
				}
			}

			// PR-E6: timeout, the process gone.
			start := time.Now()
			res = n.execute(n.createDefinition(`{"exec":"sleep","argv":["30"],"timeout":1}`), nil)
			if took := time.Since(start); took > 3*time.Second {
				t.Errorf("timeout took %v", took)
			}
			if res["status"] != "timeout" || res["exit_code"] != nil {
				t.Errorf("sleep: %v", res)
			}
			rec = path(n.entity(res["execution"].(string)), "attributes", "process", "execution").(map[string]any)
			if pid, _ := rec["pid"].(float64); pid == 0 || processAlive(int(pid)) {
				t.Errorf("pid %v recorded, alive %v", rec["pid"], processAlive(int(pid)))
			}

			// PR-E7: non-zero exit.
			res = n.execute(n.createDefinition(`{"exec":"sh","argv":["-c","echo oops >&2; exit 3"]}`), nil)
			if res["status"] != "failed" || res["exit_code"] != 3.0 || res["stderr"] != "oops\n" {
				t.Errorf("exit 3: %v", res)
			}
			// PR-E8: missing exec; the server keeps serving.
			res = n.execute(n.createDefinition(`{"exec":"definitely-not-a-binary"}`), nil)
			if e, _ := res["error"].(string); res["status"] != "error" || res["exit_code"] != nil || !strings.Contains(e, "not found") {
				t.Errorf("missing exec: %v", res)
			}
			// PR-E9 and PR-E11: no shell; the run directory is gone.
			res = n.execute(n.createDefinition(`{"exec":"echo","argv":["$(id)",";","${input_file}x"],"input_adapter":`+processtest.FileIn+`}`), map[string]any{"input": "i"})
			out, _ := res["output"].(string)
			runInput, ok := strings.CutPrefix(strings.TrimSuffix(out, "x\n"), "$(id) ; ")
			if res["status"] != "succeeded" || !ok || !strings.HasSuffix(runInput, "/input") {
				t.Errorf("no shell: %v", res)
			} else if _, err := os.Stat(strings.TrimSuffix(runInput, "/input")); !os.IsNotExist(err) {
				t.Errorf("run directory of %s still there (%v)", runInput, err)
			}
			// PR-E10: output file never produced.
			res = n.execute(n.createDefinition(`{"exec":"true","output_adapter":`+processtest.FileOut+`}`), nil)
			if e, _ := res["error"].(string); res["status"] != "failed" || !strings.Contains(e, "output file") {
				t.Errorf("no output file: %v", res)
			}
			// The request's timeout overrides; bad action attributes are 400.
			res = n.execute(n.createDefinition(`{"exec":"sleep","argv":["30"],"timeout":60}`), map[string]any{"timeout": 0.3})
			if res["status"] != "timeout" {
				t.Errorf("timeout attribute: %v", res)
			}
			expect(t, n.do("POST", trLoc+"?action=execute", `{"attributes":{"input":"a","input_base64":"YQ=="}}`, "Content-Type", "application/occi+json"), http.StatusBadRequest)
			expect(t, n.do("POST", trLoc+"?action=execute", `{"attributes":{"input_base64":"%%%"}}`, "Content-Type", "application/occi+json"), http.StatusBadRequest)
			// A service definition's execute is 202 (see TestServiceExecuteConsoleCancel).
			// cancel on a finished execution is 409.
			expect(t, n.do("POST", exec+"?action=cancel", `{}`, "Content-Type", "application/occi+json"), http.StatusConflict)
		})
		t.Run("after a restart", func(t *testing.T) {
			n := startNode(t, open(t), nodeOptions{})
			var posted any
			_ = jsonUnmarshal(bigDef, &posted)
			if got := path(n.entity(bigLoc), "attributes", "process", "definition"); !jsonEqual(got, posted) {
				t.Errorf("PR-S7: definition changed across the restart: %v", got)
			}
			rec := path(n.entity(trResult["execution"].(string)), "attributes", "process", "execution").(map[string]any)
			if rec["status"] != "succeeded" || rec["exit_code"] != 0.0 || rec["output"] != "abc\n" {
				t.Errorf("PR-E13: execution after the restart %v", rec)
			}
			if res := n.execute(trLoc, map[string]any{"input": "xyx"}); res["output"] != "y" {
				t.Errorf("tr after the restart: %v", res)
			}
		})
	})
}

// PR-E12: ten concurrent executes each get their own output.
func TestExecuteConcurrent(t *testing.T) {
	n := startNode(t, nil, nodeOptions{})
	loc := n.createDefinition(`{"exec":"cat","argv":["${input_file}"],"input_adapter":` + processtest.FileIn + `,"output_adapter":` + processtest.StdoutOut + `}`)
	var wg sync.WaitGroup
	results := make([]map[string]any, 10)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := n.do("POST", loc+"?action=execute", fmt.Sprintf(`{"attributes":{"input":"n=%d"}}`, i), "Content-Type", "application/occi+json")
			if r.status == http.StatusOK {
				results[i] = r.json(t)
			}
		}()
	}
	wg.Wait()
	seen := map[any]bool{}
	for i, r := range results {
		if r["output"] != fmt.Sprintf("n=%d", i) {
			t.Errorf("execute %d: %v", i, r)
			continue
		}
		seen[r["execution"]] = true
		// Each record, written concurrently with the others, holds its own run.
		rec, _ := path(n.entity(r["execution"].(string)), "attributes", "process", "execution").(map[string]any)
		if rec["output"] != r["output"] || rec["status"] != "succeeded" || rec["input_size"] != float64(len(r["output"].(string))) {
			t.Errorf("execute %d: record %v", i, rec)
		}
	}
	if len(seen) != 10 {
		t.Errorf("%d distinct execution records, want 10", len(seen))
	}
}

// PR-E14: the output cap (here 1 MiB, the default) truncates and flags.
func TestExecuteOutputCap(t *testing.T) {
	n := startNode(t, nil, nodeOptions{})
	res := n.execute(n.createDefinition(`{"exec":"head","argv":["-c","5000000","/dev/zero"],"output_adapter":`+processtest.StdoutOut+`}`), nil)
	if out, _ := res["output"].(string); res["status"] != "succeeded" || res["truncated"] != true || len(out) != 1<<20 {
		t.Errorf("status %v truncated %v, %d bytes", res["status"], res["truncated"], len(out))
	}
	small := startNode(t, nil, nodeOptions{maxOutput: 4})
	res = small.execute(small.createDefinition(`{"exec":"echo","argv":["hello"]}`), nil)
	if res["output"] != "hell" || res["truncated"] != true {
		t.Errorf("cap 4: %v", res)
	}
}

// An execution record keeps output and stderr up to its own cap (cut on a
// character boundary), says so and gives the full sizes, while the answer
// carries all of them; a record within the cap keeps everything. Both
// stores, the record read back after a restart.
func TestExecuteRecordCap(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(t *testing.T) store.Store) {
		var res map[string]any
		var smallExec string
		check := func(n *node) {
			t.Helper()
			rec := path(n.entity(res["execution"].(string)), "attributes", "process", "execution").(map[string]any)
			if got, _ := rec["output"].(string); got != strings.Repeat("✓\n", 250) {
				t.Errorf("record output: %d bytes %.20q", len(got), got)
			}
			if got, _ := rec["stderr"].(string); got != strings.Repeat("e", 1001) {
				t.Errorf("record stderr: %d bytes", len(got))
			}
			if rec["record_truncated"] != true || rec["output_size"] != 120000.0 || rec["stderr_size"] != 2000.0 || rec["status"] != "succeeded" || rec["exit_code"] != 0.0 {
				t.Errorf("record %v %v %v %v %v", rec["record_truncated"], rec["output_size"], rec["stderr_size"], rec["status"], rec["exit_code"])
			}
			rec = path(n.entity(smallExec), "attributes", "process", "execution").(map[string]any)
			if _, ok := rec["record_truncated"]; ok || rec["output"] != "small\n" {
				t.Errorf("small record %v", rec)
			}
		}
		t.Run("run", func(t *testing.T) {
			n := startNode(t, open(t), nodeOptions{maxRecord: 1001})
			// 30000 lines of "✓\n" (4 bytes each) on stdout, 2000 bytes of "e" on stderr.
			loc := n.createDefinition(`{"exec":"sh","argv":["-c","yes ✓ | head -n 30000; head -c 2000 /dev/zero | tr '\\0' e >&2"],"output_adapter":` + processtest.StdoutOut + `}`)
			res = n.execute(loc, nil)
			out, _ := res["output"].(string)
			if res["status"] != "succeeded" || len(out) != 120000 || res["truncated"] != false || len(res["stderr"].(string)) != 2000 {
				t.Fatalf("status %v, %d bytes of output, truncated %v, stderr %d bytes", res["status"], len(out), res["truncated"], len(res["stderr"].(string)))
			}
			if _, ok := res["record_truncated"]; ok {
				t.Errorf("the answer says record_truncated")
			}
			small := n.createDefinition(`{"exec":"echo","argv":["small"]}`)
			smallExec = n.execute(small, nil)["execution"].(string)

			check(n)
		})
		t.Run("after a restart", func(t *testing.T) {
			check(startNode(t, open(t), nodeOptions{maxRecord: 1001}))
		})
	})
}

// A run long enough to get a running record has its result stored before
// the answer: the store itself (not only reads through the server, which
// wait for pending writes) holds it when the answer arrives. Both stores.
func TestExecuteLongRunStoredBeforeAnswer(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(t *testing.T) store.Store) {
		st := open(t)
		n := startNode(t, st, nodeOptions{})
		loc := n.createDefinition(`{"exec":"sh","argv":["-c","sleep 0.3; echo slow"],"output_adapter":` + processtest.StdoutOut + `}`)
		for range 2 {
			res := n.execute(loc, nil)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			doc, err := st.Get(ctx, res["execution"].(string))
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			var body map[string]any
			if err := json.Unmarshal(doc.Body, &body); err != nil {
				t.Fatal(err)
			}
			rec, _ := path(body, "attributes", "process", "execution").(map[string]any)
			if res["status"] != "succeeded" || rec["status"] != "succeeded" || rec["output"] != "slow\n" {
				t.Fatalf("answer %v; stored record %v", res["status"], rec)
			}
		}
	})
}

// cancel stops a running execution; its record says cancelled.
func TestCancel(t *testing.T) {
	n := startNode(t, nil, nodeOptions{})
	loc := n.createDefinition(`{"exec":"sleep","argv":["30"]}`)
	done := make(chan map[string]any, 1)
	go func() {
		r := n.do("POST", loc+"?action=execute", `{}`, "Content-Type", "application/occi+json")
		m, _ := jsonObject(r.body)
		done <- m
	}()
	var exec string
	for deadline := time.Now().Add(5 * time.Second); exec == "" && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		r := n.do("GET", "/process/execution/", "", "Accept", "text/uri-list")
		if s := strings.TrimSpace(string(r.body)); r.status == 200 && s != "" {
			exec = s[strings.Index(s, "/process/"):]
		}
	}
	if exec == "" {
		t.Fatal("no execution record appeared")
	}
	expect(t, n.do("POST", exec+"?action=cancel", `{}`, "Content-Type", "application/occi+json"), http.StatusOK)
	select {
	case res := <-done:
		if res["status"] != "cancelled" {
			t.Errorf("execute after cancel: %v", res)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("execute did not return after cancel")
	}
	if s := path(n.entity(exec), "attributes", "process", "execution", "status"); s != "cancelled" {
		t.Errorf("record status %v", s)
	}
}

func processAlive(pid int) bool {
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if syscall.Kill(pid, 0) != nil {
			return false
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return false
		}
		if _, after, _ := strings.Cut(string(b), ") "); strings.HasPrefix(after, "Z") {
			return false
		}
	}
	return true
}
