package transport

import (
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
