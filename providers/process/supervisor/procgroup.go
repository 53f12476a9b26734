package supervisor

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
)

// GroupMembers counts the live processes (zombies excluded) in process
// group pgid, from /proc; 0 where /proc is not readable. Tests and
// operators use it to check that nothing survived a stop.
func GroupMembers(pgid int) int {
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
