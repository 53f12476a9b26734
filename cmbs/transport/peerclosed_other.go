//go:build !linux

package transport

import "net"

// peerClosed is only implemented on Linux; elsewhere a cached socket to a
// restarted peer is noticed by the connection's reader (or by the failed
// request).
func peerClosed(net.Conn) bool { return false }
