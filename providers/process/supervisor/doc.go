// Package supervisor keeps long-running processes alive: it starts a
// command in its own process group, restarts it when it exits with an
// exponential backoff (0.1 s doubling up to 30 s, back to 0.1 s once a run
// has been up 10 s), and stops it with SIGTERM to the whole group and
// SIGKILL after a grace. Nothing it started survives Stop, Remove or
// Close: every exit of a process is followed by a SIGKILL to its group.
//
// Each process has a Log: its stdout and stderr merged as lines, with the
// supervisor's own "[supervisor] …" event lines (spawned, exited, restarting
// in, stopped), a ring of the last lines, and subscribers that are dropped
// when they fall behind instead of slowing anyone down.
//
// The package knows nothing of OCCI or HTTP: the Process Registry's service
// definitions and smartmob processes map onto it.
package supervisor
