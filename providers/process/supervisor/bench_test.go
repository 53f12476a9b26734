package supervisor

import (
	"context"
	"os/exec"
	"testing"
	"time"
)

// BenchmarkRestart is the cost of one supervised restart of /bin/true
// (spawn, wait, group kill, log events) with no backoff; compare with
// BenchmarkRawExec, the same process run by os/exec.
func BenchmarkRestart(b *testing.B) {
	s := New(Options{KillGrace: time.Second, backoff: func(time.Duration, time.Duration) time.Duration { return 0 }})
	defer s.Close(context.Background())
	b.ResetTimer()
	p, err := s.Start("true", Spec{Path: "/bin/true"})
	if err != nil {
		b.Fatal(err)
	}
	for p.Status().Restarts < b.N {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
}

func BenchmarkRawExec(b *testing.B) {
	for i := 0; i < b.N; i++ {
		if err := exec.Command("/bin/true").Run(); err != nil {
			b.Fatal(err)
		}
	}
}
