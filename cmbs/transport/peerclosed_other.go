//go:build !linux

package transport

import "net"

// peerClosed is only implemented on Linux; elsewhere a cached socket to a
// restarted peer is noticed by the connection's reader (or by the failed
// request).
func peerClosed(net.Conn) bool { return false }

// hasData is only implemented on Linux; elsewhere a pending connection is
// evictable as silent only until its signature has been read.
func hasData(net.Conn) bool { return false }

// waitReadable is only implemented on Linux; elsewhere it returns at once.
func waitReadable(net.Conn) error { return nil }
