package main

import (
	"log/slog"

	"github.com/cmbs/cmbs/cmbs/transport"
)

// fdReserve is the least number of file descriptors kept from ZeroMQ
// peers: for HTTP clients, the store, outgoing ZeroMQ connections and
// files. A quarter of the limit is kept when that is more.
const fdReserve = 256

// zmqConnQuota is how many inbound ZeroMQ connections all member layer
// sockets may hold together under a limit of nofile open files (0:
// unknown, no quota).
func zmqConnQuota(nofile uint64) int {
	if nofile == 0 {
		return 0
	}
	keep := max(fdReserve, nofile/4)
	if nofile <= keep {
		return 1
	}
	return int(min(nofile-keep, 1<<30))
}

// zmqOptions turns the --zmq-* flags into the transport options the broker
// gives every socket: one read budget shared by all of them, and a quota
// of inbound connections derived from the open-file limit, so that ZeroMQ
// peers can never take the descriptors HTTP needs.
func zmqOptions(z zmqLimits, logger *slog.Logger) []transport.Option {
	opts := []transport.Option{
		transport.WithMaxConns(z.MaxConns),
		transport.WithPeerIdleTimeout(z.IdleTimeout),
		transport.WithMaxMessageSize(z.MaxMessage),
		transport.WithReadBudget(transport.NewReadBudget(z.ReadBudget)),
		transport.WithMessageTimeout(z.MessageTimeout),
	}
	nofile, err := openFileLimit()
	if err != nil {
		logger.Warn("cannot read the open-file limit; ZeroMQ connections are bounded per socket only", "err", err)
		return opts
	}
	quota := zmqConnQuota(nofile)
	if quota == 0 {
		return opts
	}
	logger.Info("ZeroMQ connection limits", "per_socket", z.MaxConns, "all_sockets", quota, "open_file_limit", nofile)
	if z.MaxConns > quota {
		logger.Warn("--zmq-max-conns exceeds what the open-file limit leaves for ZeroMQ; the process-wide quota binds first",
			"zmq_max_conns", z.MaxConns, "quota", quota, "open_file_limit", nofile)
	}
	return append(opts, transport.WithConnQuota(transport.NewConnQuota(quota)))
}
