// Package smartmob is the provider of the smartmob process kind
// (http://cmbs.dev/occi/smartmob#process at /smartmob/process/): an
// application archive named by source_url is provisioned (downloaded,
// unpacked, its Procfile read; package provision) in a private directory,
// and its process_type command runs as `sh -c` on the server's one
// supervisor (package supervisor), which restarts it with backoff and
// keeps its console. The entity shows the live state, pid, restarts,
// last exit code and start time, written to the store as they change;
// desired (running or stopped, set by the start and stop actions) is
// persisted, and the server provisions every desired-running process
// again when it starts.
//
// The package also serves the process consoles over WebSocket
// (/smartmob/process/<id>/console, ConsoleHandler) and smartmob-agent's
// own HTTP API under /smartmob-agent/ (Agent), over the same entities.
package smartmob
