package main

import (
	"bufio"
	"context"
	"debug/elf"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// unprivilegedUID is the user the release binary is run as when the test
// runs as root: nobody.
const unprivilegedUID = 65534

// releaseBuildTimeout bounds building the release binary (every dependency
// is compiled again: -trimpath changes their cache keys).
const releaseBuildTimeout = 8 * time.Minute

// dockerfileBuildCommand returns the Dockerfile's RUN instruction that
// builds cmbsd, continuation lines joined.
func dockerfileBuildCommand(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var found []string
	var cur strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if cur.Len() == 0 && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if cont, ok := strings.CutSuffix(line, `\`); ok {
			cur.WriteString(cont + " ")
			continue
		}
		cur.WriteString(line)
		instr := cur.String()
		cur.Reset()
		if cmd, ok := strings.CutPrefix(instr, "RUN "); ok && strings.Contains(cmd, "go build") {
			found = append(found, strings.TrimSpace(cmd))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(found) != 1 {
		t.Fatalf("%s: want one RUN instruction with go build, found %d: %q", path, len(found), found)
	}
	return found[0]
}

// TestReleaseBinary builds cmbsd with the Dockerfile's own build command,
// checks the binary is static (no ELF interpreter, no dynamic section) and
// runs it as an unprivileged user with its store under a data directory,
// answering /-/status. Where a Docker engine answers, the image is built
// too.
func TestReleaseBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the release binary: not in -short")
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	build := dockerfileBuildCommand(t, filepath.Join(root, "Dockerfile"))
	for _, want := range []string{"CGO_ENABLED=0", "-o /out/cmbsd", "./cmd/cmbsd"} {
		if !strings.Contains(build, want) {
			t.Fatalf("Dockerfile build command %q lacks %q", build, want)
		}
	}

	dir := t.TempDir()
	bin := filepath.Join(dir, "cmbsd")
	ctx, cancel := context.WithTimeout(t.Context(), releaseBuildTimeout)
	defer cancel()
	sh := exec.CommandContext(ctx, "sh", "-c", strings.Replace(build, "-o /out/cmbsd", "-o '"+bin+"'", 1))
	sh.Dir = root
	if out, err := sh.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", sh.Args[2], err, out)
	}

	t.Run("static", func(t *testing.T) {
		f, err := elf.Open(bin)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
				t.Errorf("program header %v: the binary is dynamically linked", p.Type)
			}
		}
		if s := f.Section(".dynamic"); s != nil {
			t.Error("the binary has a .dynamic section")
		}
		if s := f.Section(".interp"); s != nil {
			t.Error("the binary has an .interp section")
		}
	})

	t.Run("unprivileged", func(t *testing.T) {
		runUnprivileged(t, dir, bin)
	})

	t.Run("docker build", func(t *testing.T) {
		dockerBuild(t, root)
	})
}

// runUnprivileged starts bin as nobody (as itself when not root) with its
// store under dir/data, and checks /-/status and the store's file.
func runUnprivileged(t *testing.T, dir, bin string) {
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o750); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--listen", "127.0.0.1:0", "--store", "sqlite:"+filepath.Join(data, "cmbs.db"),
		"--run-dir", data)
	wantUID := os.Geteuid()
	if wantUID == 0 {
		wantUID = unprivilegedUID
		// t.TempDir's directories are root's, mode 0700: let nobody in.
		for _, d := range []string{filepath.Dir(dir), dir} {
			if err := os.Chmod(d, 0o711); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Chown(data, unprivilegedUID, unprivilegedUID); err != nil {
			t.Fatal(err)
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: unprivilegedUID, Gid: unprivilegedUID}}
	}
	cmd.Dir = data
	p := runProcess(t, cmd, nil)
	addr := p.waitListening(t)

	if uid := processUID(t, cmd.Process.Pid); uid != wantUID || uid == 0 {
		t.Errorf("cmbsd runs as uid %d, want %d (not root)", uid, wantUID)
	}
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get("http://" + addr + statusPath)
	if err != nil {
		t.Fatal(err)
	}
	var rep statusReport
	err = json.NewDecoder(resp.Body).Decode(&rep)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || rep.Status != "ok" {
		t.Fatalf("GET %s: %d %+v %v", statusPath, resp.StatusCode, rep, err)
	}
	fi, err := os.Stat(filepath.Join(data, "cmbs.db"))
	if err != nil {
		t.Fatalf("the store is not under the data directory: %v", err)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != wantUID {
		t.Errorf("cmbs.db owned by uid %d, want %d", st.Uid, wantUID)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.waitExit(t); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
}

// processUID reads the real uid of a process from /proc.
func processUID(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "Uid:"); ok {
			fields := strings.Fields(rest)
			if len(fields) > 0 {
				uid, err := strconv.Atoi(fields[0])
				if err == nil {
					return uid
				}
			}
		}
	}
	t.Fatalf("no Uid line in /proc/%d/status", pid)
	return -1
}

// dockerBuild builds the image where a Docker engine answers, and checks
// the image's binary starts (--version) as its non-root user.
func dockerBuild(t *testing.T, root string) {
	docker, err := exec.LookPath("docker")
	if err != nil {
		t.Skip("no docker command: the image is not built here")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, docker, "info").CombinedOutput(); err != nil {
		t.Skipf("no Docker engine answers (%v): the image is not built here\n%s", err, out)
	}
	bctx, bcancel := context.WithTimeout(t.Context(), releaseBuildTimeout)
	defer bcancel()
	tag := "cmbs-release-test:" + strconv.Itoa(os.Getpid())
	if out, err := exec.CommandContext(bctx, docker, "build", "-t", tag, root).CombinedOutput(); err != nil {
		t.Fatalf("docker build: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command(docker, "rmi", "-f", tag).Run() })
	out, err := exec.CommandContext(bctx, docker, "run", "--rm", "--entrypoint", "/usr/local/bin/cmbsd", tag, "--version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "cmbsd ") {
		t.Fatalf("docker run --version: %v\n%s", err, out)
	}
	out, err = exec.CommandContext(bctx, docker, "image", "inspect", "--format", "{{.Config.User}}", tag).CombinedOutput()
	if user := strings.TrimSpace(string(out)); err != nil || user == "" || user == "0" || strings.HasPrefix(user, "root") {
		t.Fatalf("image user %q (%v): want a non-root user", user, err)
	}
}
