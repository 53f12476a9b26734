//go:build linux

package transport

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// peerClosed reports whether the kernel already knows that the peer shut its
// side of c down (FIN or RST received). The connection's reader notices the
// same thing only when it is next scheduled; asking the kernel lets a client
// drop an idle connection to a restarted server before sending into it.
func peerClosed(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	closed := false
	err = raw.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLRDHUP}}
		n, perr := unix.Poll(fds, 0)
		closed = perr == nil && n > 0 && fds[0].Revents&(unix.POLLRDHUP|unix.POLLHUP|unix.POLLERR|unix.POLLNVAL) != 0
	})
	return err != nil || closed
}

// hasData reports whether bytes (or the peer's FIN) wait to be read on c.
func hasData(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	ready := false
	_ = raw.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, perr := unix.Poll(fds, 0)
		ready = perr == nil && n > 0 && fds[0].Revents&unix.POLLIN != 0
	})
	return ready
}

// waitReadable waits, within c's read deadline, until bytes (or the peer's
// FIN) can be read from c, without reading them: hasData keeps seeing them
// until the caller has noted that the peer spoke.
func waitReadable(c net.Conn) error {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	polled := false
	return raw.Read(func(fd uintptr) bool {
		if !polled {
			// The first call is made before waiting: only go on if data
			// is already there, else wait for the poller to say so.
			polled = true
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			n, perr := unix.Poll(fds, 0)
			return perr != nil || (n > 0 && fds[0].Revents != 0)
		}
		return true
	})
}
