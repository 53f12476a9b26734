package process_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cmbs/cmbs/providers/process/internal/processtest"
	"github.com/cmbs/cmbs/store"
)

// streamReply is a streamed execute's answer, read whole.
type streamReply struct {
	status  int
	header  http.Header
	trailer http.Header
	body    []byte
}

// stream POSTs body (nil: none) to loc?action=execute as
// application/octet-stream, plus the query, and reads the whole answer.
func (n *node) stream(ctx context.Context, loc, query string, body io.Reader, header ...string) (streamReply, error) {
	n.t.Helper()
	resp, err := n.openStream(ctx, loc, query, body, header...)
	if err != nil {
		return streamReply{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return streamReply{resp.StatusCode, resp.Header, resp.Trailer, b}, err
}

// openStream sends a streamed execute of the definition at loc and
// returns the answer as it begins, its body to be read and closed.
func (n *node) openStream(ctx context.Context, loc, query string, body io.Reader, header ...string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, "POST", n.url+loc+"?action=execute"+query, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("Accept", "application/octet-stream")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return http.DefaultClient.Do(req)
}

func (n *node) mustStream(loc, query string, body io.Reader, header ...string) streamReply {
	n.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := n.stream(ctx, loc, query, body, header...)
	if err != nil {
		n.t.Fatalf("stream %s: %v", loc, err)
	}
	return r
}

// recordOf GETs the execution record a streamed answer names.
func (n *node) recordOf(r streamReply) map[string]any {
	n.t.Helper()
	loc := r.header.Get("X-Process-Execution")
	if loc == "" || r.header.Get("Location") != loc {
		n.t.Fatalf("execution %q, Location %q", loc, r.header.Get("Location"))
	}
	rec, _ := path(n.entity(loc), "attributes", "process", "execution").(map[string]any)
	return rec
}

// trInput is 10 MiB of text with x's for tr -d x to drop.
func trInput() []byte {
	const size = 10 << 20
	return bytes.Repeat([]byte("the quick brown fox jumps over the lazy dog x\n"), size/46+1)[:size]
}

func checkTrailers(t *testing.T, r streamReply, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got := r.trailer.Get(k); got != v {
			t.Errorf("trailer %s = %q, want %q (trailers %v)", k, got, v, r.trailer)
		}
	}
}

// A streamed execute: 10 MiB through tr byte-exact (Go client and curl),
// the trailers, the record (capped, with the full output size), a failing
// command's exit code, file adapters, on both stores.
func TestStreamExecute(t *testing.T) {
	eachStore(t, func(t *testing.T, open func(t *testing.T) store.Store) {
		n := startNode(t, open(t), nodeOptions{maxBody: 64 << 20, maxRecord: 1024})
		trLoc := n.createDefinition(processtest.TrDefinition)
		input := trInput()
		want := bytes.ReplaceAll(input, []byte("x"), nil)
		wantSum := sha256.Sum256(want)

		t.Run("tr over 10 MiB", func(t *testing.T) {
			r := n.mustStream(trLoc, "", bytes.NewReader(input))
			if r.status != http.StatusOK || r.header.Get("Content-Type") != "application/octet-stream" {
				t.Fatalf("status %d, Content-Type %q: %.300s", r.status, r.header.Get("Content-Type"), r.body)
			}
			if sha256.Sum256(r.body) != wantSum {
				t.Fatalf("output differs: %d bytes, want %d", len(r.body), len(want))
			}
			checkTrailers(t, r, map[string]string{"X-Process-Status": "succeeded", "X-Process-Exit-Code": "0",
				"X-Process-Input-Size": strconv.Itoa(len(input)), "X-Process-Output-Size": strconv.Itoa(len(want)),
				"X-Process-Truncated": "false", "X-Process-Error": ""})
			if !strings.HasSuffix(r.header.Get("X-Process-Definition"), trLoc) {
				t.Errorf("X-Process-Definition %q", r.header.Get("X-Process-Definition"))
			}
			rec := n.recordOf(r)
			if rec["status"] != "succeeded" || rec["exit_code"] != 0.0 || rec["record_truncated"] != true ||
				rec["output_size"] != float64(len(want)) || rec["input_size"] != float64(len(input)) || rec["output"] != string(want[:1024]) {
				t.Errorf("record %v", rec)
			}
		})

		t.Run("curl --data-binary", func(t *testing.T) {
			curl, err := exec.LookPath("curl")
			if err != nil {
				t.Skip("curl is not installed")
			}
			dir := t.TempDir()
			in, out, hdr := filepath.Join(dir, "big.txt"), filepath.Join(dir, "out"), filepath.Join(dir, "headers")
			if err := os.WriteFile(in, input, 0o600); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, curl, "-sS", "--fail", "--data-binary", "@"+in, "-H", "Content-Type: application/octet-stream",
				"-o", out, "-D", hdr, n.url+trLoc+"?action=execute")
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("curl: %v: %s", err, b)
			}
			got, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			if sha256.Sum256(got) != wantSum {
				t.Fatalf("curl got %d bytes, want %d", len(got), len(want))
			}
			headers, _ := os.ReadFile(hdr)
			for _, line := range []string{"X-Process-Status: succeeded", "X-Process-Exit-Code: 0", "X-Process-Output-Size: " + strconv.Itoa(len(want))} {
				if !bytes.Contains(headers, []byte(line+"\r\n")) {
					t.Errorf("curl's header dump has no %q:\n%s", line, headers)
				}
			}
		})

		t.Run("a failing command", func(t *testing.T) {
			loc := n.createDefinition(`{"exec":"sh","argv":["-c","cat; echo oops >&2; exit 3"],"input_adapter":` + processtest.StdinIn + `}`)
			r := n.mustStream(loc, "", strings.NewReader("partial output\n"))
			if string(r.body) != "partial output\n" {
				t.Errorf("body %q", r.body)
			}
			checkTrailers(t, r, map[string]string{"X-Process-Status": "failed", "X-Process-Exit-Code": "3", "X-Process-Error": "exit status 3"})
			if rec := n.recordOf(r); rec["status"] != "failed" || rec["exit_code"] != 3.0 || rec["stderr"] != "oops\n" || rec["output"] != "partial output\n" {
				t.Errorf("record %v", rec)
			}
		})

		t.Run("file adapters", func(t *testing.T) {
			loc := n.createDefinition(`{"exec":"sh","argv":["-c","tr -d x < \"$0\" > \"$1\"","${input_file}","${output_file}"],
				"input_adapter":` + processtest.FileIn + `,"output_adapter":` + processtest.FileOut + `}`)
			r := n.mustStream(loc, "", bytes.NewReader(input))
			if sha256.Sum256(r.body) != wantSum {
				t.Fatalf("output differs: %d bytes, want %d", len(r.body), len(want))
			}
			checkTrailers(t, r, map[string]string{"X-Process-Status": "succeeded", "X-Process-Input-Size": strconv.Itoa(len(input))})
		})

		t.Run("no output file", func(t *testing.T) {
			loc := n.createDefinition(`{"exec":"true","argv":["${output_file}"],"output_adapter":` + processtest.FileOut + `}`)
			r := n.mustStream(loc, "", nil)
			checkTrailers(t, r, map[string]string{"X-Process-Status": "failed", "X-Process-Exit-Code": "0"})
			if !strings.Contains(r.trailer.Get("X-Process-Error"), "was not produced") {
				t.Errorf("error %q", r.trailer.Get("X-Process-Error"))
			}
		})
	})
}

// What a streamed execute refuses before it runs anything: JSON errors.
func TestStreamExecuteRefused(t *testing.T) {
	n := startNode(t, nil, nodeOptions{maxBody: 1024})
	echo := n.createDefinition(`{"exec":"echo","argv":["hi"]}`)
	cat := n.createDefinition(`{"exec":"cat","input_adapter":` + processtest.StdinIn + `}`)
	svc := n.createDefinition(`{"exec":"cat","process_type":"service"}`)
	for _, tc := range []struct {
		name, loc, query string
		body             io.Reader
		header           []string
		status           int
		says             string
	}{
		{"a body without an input adapter", echo, "", strings.NewReader("data"), nil, http.StatusBadRequest, "input_adapter"},
		{"a chunked body without an input adapter", echo, "", io.MultiReader(strings.NewReader("data")), nil, http.StatusBadRequest, "input_adapter"},
		{"not accepting the output", cat, "", strings.NewReader("data"), []string{"Accept", "application/json"}, http.StatusNotAcceptable, "octet-stream"},
		{"a bad timeout", cat, "&timeout=-1", strings.NewReader("data"), nil, http.StatusBadRequest, "timeout"},
		{"a service", svc, "", nil, nil, http.StatusConflict, "service"},
		{"a declared body over the limit", cat, "", bytes.NewReader(make([]byte, 2048)), nil, http.StatusRequestEntityTooLarge, "--max-body"},
		{"an unknown definition", "/process/definition/nope", "", nil, nil, http.StatusNotFound, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := n.mustStream(tc.loc, tc.query, tc.body, tc.header...)
			if r.status != tc.status || !bytes.Contains(r.body, []byte(tc.says)) || !bytes.Contains(r.body, []byte(`"error"`)) {
				t.Errorf("status %d, want %d, saying %q: %s", r.status, tc.status, tc.says, r.body)
			}
		})
	}
	t.Run("no body without an input adapter", func(t *testing.T) {
		r := n.mustStream(echo, "", nil)
		if r.status != http.StatusOK || string(r.body) != "hi\n" {
			t.Errorf("status %d, body %q", r.status, r.body)
		}
		checkTrailers(t, r, map[string]string{"X-Process-Status": "succeeded"})
	})
	t.Run("cancel takes no stream", func(t *testing.T) {
		r := n.mustStream(echo, "", nil)
		exe := r.header.Get("X-Process-Execution")
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "POST", exe+"?action=cancel", nil)
		req.Header.Set("Content-Type", "application/octet-stream")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnsupportedMediaType {
			t.Errorf("status %d", resp.StatusCode)
		}
	})
	t.Run("a chunked body over the limit", func(t *testing.T) {
		// The run has started when the body passes the limit: it is killed
		// and the trailers say why.
		r := n.mustStream(cat, "", io.MultiReader(bytes.NewReader(make([]byte, 4096))))
		checkTrailers(t, r, map[string]string{"X-Process-Status": "error"})
		if !strings.Contains(r.trailer.Get("X-Process-Error"), "too large") {
			t.Errorf("error %q", r.trailer.Get("X-Process-Error"))
		}
	})
	t.Run("a file input that does not arrive within the timeout", func(t *testing.T) {
		loc := n.createDefinition(`{"exec":"cat","argv":["${input_file}"],"input_adapter":` + processtest.FileIn + `}`)
		pr, pw := io.Pipe()
		defer pw.Close()
		go func() { _, _ = pw.Write([]byte("the start")) }() // and no end
		r := n.mustStream(loc, "&timeout=0.3", pr)
		if r.status != http.StatusRequestTimeout || !bytes.Contains(r.body, []byte("timeout")) {
			t.Errorf("status %d: %s", r.status, r.body)
		}
	})
	t.Run("a chunked body over the limit into a file", func(t *testing.T) {
		loc := n.createDefinition(`{"exec":"cat","argv":["${input_file}"],"input_adapter":` + processtest.FileIn + `}`)
		r := n.mustStream(loc, "", io.MultiReader(bytes.NewReader(make([]byte, 4096))))
		if r.status != http.StatusRequestEntityTooLarge {
			t.Errorf("status %d: %s", r.status, r.body)
		}
	})
}

// waitRecord polls an execution record until its status is not running
// (bounded).
func (n *node) waitRecord(loc string) map[string]any {
	n.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		rec, _ := path(n.entity(loc), "attributes", "process", "execution").(map[string]any)
		if rec["status"] != "running" {
			return rec
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("execution %s still running: %v", loc, rec)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A run ends, its whole process group killed, when the client goes away,
// stops reading, or the timeout passes mid-stream; nothing leaks (the
// test binary checks goroutines).
func TestStreamExecuteEnds(t *testing.T) {
	n := startNode(t, nil, nodeOptions{idle: 500 * time.Millisecond})
	// A child in the background must die with the run.
	catLoc := n.createDefinition(`{"exec":"sh","argv":["-c","sleep 300 & cat"],"input_adapter":` + processtest.StdinIn + `}`)

	t.Run("client disconnect", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		pr, pw := io.Pipe()
		defer pw.Close()
		done := make(chan error, 1)
		go func() {
			_, err := pw.Write([]byte("first line\n"))
			done <- err
		}()
		resp, err := n.openStream(ctx, catLoc, "", pr)
		if err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		line := make([]byte, len("first line\n"))
		if _, err := io.ReadFull(resp.Body, line); err != nil || string(line) != "first line\n" {
			t.Fatalf("read %q: %v", line, err)
		}
		exe := resp.Header.Get("X-Process-Execution")
		cancel() // the client goes away mid-stream
		resp.Body.Close()
		rec := n.waitRecord(exe)
		if rec["status"] != "cancelled" && rec["status"] != "error" {
			t.Errorf("record %v", rec)
		}
		if pid, _ := rec["pid"].(float64); pid <= 0 || !groupGone(int(pid)) {
			t.Errorf("process group %v left", rec["pid"])
		}
	})

	t.Run("cancel", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		pr, pw := io.Pipe()
		defer pw.Close()
		go func() { _, _ = pw.Write([]byte("some input\n")) }() // and no end
		resp, err := n.openStream(ctx, catLoc, "", pr)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		// The headers name a record that is there, running, and cancel
		// finds it.
		exe := resp.Header.Get("X-Process-Execution")
		if rec, _ := path(n.entity(exe), "attributes", "process", "execution").(map[string]any); rec["status"] != "running" {
			t.Errorf("record while running: %v", rec)
		}
		line := make([]byte, len("some input\n"))
		if _, err := io.ReadFull(resp.Body, line); err != nil || string(line) != "some input\n" {
			t.Fatalf("read %q: %v", line, err)
		}
		expect(t, n.do("POST", exe+"?action=cancel", "{}"), http.StatusOK)
		body, err := io.ReadAll(resp.Body)
		if err != nil || len(body) != 0 || resp.Trailer.Get("X-Process-Status") != "cancelled" {
			t.Errorf("body %q (%v), trailers %v", body, err, resp.Trailer)
		}
		rec := n.waitRecord(exe)
		if pid, _ := rec["pid"].(float64); rec["status"] != "cancelled" || pid <= 0 || !groupGone(int(pid)) {
			t.Errorf("record %v", rec)
		}
	})

	t.Run("timeout mid-stream", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		pr, pw := io.Pipe()
		defer pw.Close()
		go func() { _, _ = pw.Write([]byte("some input\n")) }() // and no end
		r, err := n.stream(ctx, catLoc, "&timeout=0.3", pr)
		if err != nil {
			t.Fatal(err)
		}
		if string(r.body) != "some input\n" {
			t.Errorf("body %q", r.body)
		}
		checkTrailers(t, r, map[string]string{"X-Process-Status": "timeout", "X-Process-Exit-Code": ""})
		rec := n.recordOf(r)
		if pid, _ := rec["pid"].(float64); rec["status"] != "timeout" || pid <= 0 || !groupGone(int(pid)) {
			t.Errorf("record %v", rec)
		}
	})

	t.Run("client stops reading", func(t *testing.T) {
		yes := n.createDefinition(`{"exec":"yes"}`)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		resp, err := n.openStream(ctx, yes, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		// Read nothing: the server's writes stall, and the idle timeout
		// ends the run.
		rec := n.waitRecord(resp.Header.Get("X-Process-Execution"))
		if pid, _ := rec["pid"].(float64); rec["status"] != "error" || !strings.Contains(fmt.Sprint(rec["error"]), "writing the output") || pid <= 0 || !groupGone(int(pid)) {
			t.Errorf("record %v", rec)
		}
	})
}

// Ten streams at once each get their own output.
func TestStreamExecuteConcurrent(t *testing.T) {
	n := startNode(t, nil, nodeOptions{maxBody: 64 << 20})
	loc := n.createDefinition(`{"exec":"cat","input_adapter":` + processtest.StdinIn + `}`)
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in := bytes.Repeat([]byte(fmt.Sprintf("stream %d says hello\n", i)), 50000)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			r, err := n.stream(ctx, loc, "", bytes.NewReader(in))
			switch {
			case err != nil:
				errs <- err
			case !bytes.Equal(r.body, in) || r.trailer.Get("X-Process-Status") != "succeeded":
				errs <- fmt.Errorf("stream %d: %d bytes, want %d; trailers %v", i, len(r.body), len(in), r.trailer)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
