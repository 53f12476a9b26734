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
	rev, err := pollNow(c, unix.POLLRDHUP)
	return err != nil || rev&(unix.POLLRDHUP|unix.POLLHUP|unix.POLLERR|unix.POLLNVAL) != 0
}

// hasData reports whether bytes (or the peer's FIN) wait to be read on c.
func hasData(c net.Conn) bool {
	rev, err := pollNow(c, unix.POLLIN)
	return err == nil && rev&unix.POLLIN != 0
}

// pollNow polls c's descriptor for events without waiting and returns
// what the kernel reports (nothing for a c without a descriptor); the
// error is that of reaching the descriptor, not of the poll.
func pollNow(c net.Conn, events int16) (int16, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return 0, nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return 0, err
	}
	var rev int16
	err = raw.Control(func(fd uintptr) { rev, _ = pollFd(fd, events) })
	return rev, err
}

// pollFd polls fd for events without waiting.
func pollFd(fd uintptr, events int16) (int16, error) {
	fds := []unix.PollFd{{Fd: int32(fd), Events: events}}
	n, err := unix.Poll(fds, 0)
	if err != nil || n == 0 {
		return 0, err
	}
	return fds[0].Revents, nil
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
			rev, perr := pollFd(fd, unix.POLLIN)
			return perr != nil || rev != 0
		}
		return true
	})
}
