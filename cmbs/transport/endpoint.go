package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
)

// hostPort checks a user endpoint ("tcp://host:port") and returns its
// host:port. A "*" host or port means any, as in ZeroMQ.
func hostPort(endpoint string) (string, error) {
	rest, ok := strings.CutPrefix(endpoint, "tcp://")
	if !ok {
		return "", fmt.Errorf("%w %q: only tcp://host:port is supported", ErrBadEndpoint, endpoint)
	}
	host, port, err := net.SplitHostPort(rest)
	if err != nil {
		return "", fmt.Errorf("%w %q: %w", ErrBadEndpoint, endpoint, err)
	}
	if port == "*" {
		port = "0"
	}
	if host == "*" {
		host = "0.0.0.0"
	}
	return net.JoinHostPort(host, port), nil
}

// listen binds endpoint for a Server, Publisher or Puller and returns the
// listener and its bound endpoint (with the real port when endpoint asked
// for port 0). ctx only bounds the bind.
func listen(ctx context.Context, endpoint string) (net.Listener, string, error) {
	addr, err := hostPort(endpoint)
	if err != nil {
		return nil, "", fmt.Errorf("transport: listen: %w", err)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		var opErr *net.OpError
		if errors.As(err, &opErr) {
			err = opErr
		}
		return nil, "", fmt.Errorf("transport: listen %s: %w", endpoint, err)
	}
	return ln, "tcp://" + ln.Addr().String(), nil
}
