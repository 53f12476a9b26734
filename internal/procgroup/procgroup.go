// Package procgroup signals the process groups that the process engine,
// the supervisor and Choria external agents start their commands in
// (Setpgid), so that a stop reaches every process a command forked, not
// only the leader.
package procgroup

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// Signal signals the process group pgid; a group that is gone is not an
// error, and a pgid <= 0 (no process was started) signals nothing.
func Signal(pgid int, sig syscall.Signal) error {
	if pgid <= 0 {
		return nil
	}
	if err := syscall.Kill(-pgid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	return nil
}

// Members counts the live processes (zombies excluded) in process
// group pgid, from /proc; 0 where /proc is not readable. Tests and
// operators use it to check that nothing survived a stop.
func Members(pgid int) int {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	n := 0
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp …; comm may hold spaces and parens.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		fields := bytes.Fields(b[i+1:])
		if len(fields) < 3 || string(fields[0]) == "Z" || string(fields[0]) == "X" {
			continue
		}
		if g, err := strconv.Atoi(string(fields[2])); err == nil && g == pgid {
			n++
		}
	}
	return n
}
