package procgroup

import (
	"os/exec"
	"syscall"
	"testing"
)

func TestSignalNothingStarted(t *testing.T) {
	if err := Signal(0, syscall.SIGKILL); err != nil {
		t.Fatalf("Signal(0) = %v, want nil", err)
	}
}

func TestSignalGoneGroup(t *testing.T) {
	cmd := exec.Command("true")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	// The group led by the reaped process is gone: ESRCH is not an error.
	if err := Signal(cmd.Process.Pid, syscall.SIGTERM); err != nil {
		t.Fatalf("Signal(gone group) = %v, want nil", err)
	}
}
