package processtest

import (
	"syscall"
	"time"
)

// CPUTime is this process's user and system CPU time (0 if it cannot be
// read), for the benchmarks' CPU per operation.
func CPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
