package transport

import (
	"net"
	"net/netip"
	"time"
)

// Admission of new connections. A connection is pending from accept until
// its ZMTP handshake is done; pending connections are bounded per source
// address (16, withMaxPendingPerSource) and in all (128, withMaxPending),
// so that a flood of silent connections from one address cannot lock out
// the others. When a bound is reached, the new connection takes the place
// of the oldest pending one that is evictable: one that has sent nothing
// at all (a ZeroMQ peer sends its greeting as it connects), or whose
// handshake has gone on for a second (withEvictAfter; a handshake takes a
// round trip or two). Only when none is does the new one get closed. So
// even a client sharing its address with a flood gets in: it sends its
// greeting at once, and the flood's connections, having sent nothing, are
// the ones evicted.

// pendingConn is a connection accepted and not yet past its handshake.
type pendingConn struct {
	gc       *guardedConn
	source   netip.Addr
	accepted time.Time
	spoke    bool // bytes arrived from it (set before they are read, so hasData covers the gap)
	evicted  bool // closed to make room for another; no longer counted
}

// sourceOf is the address pending connections are counted by: the remote
// IPv4 address, or the remote IPv6 address's /64 (one host usually has a
// whole /64 to pick addresses from).
func sourceOf(a net.Addr) netip.Addr {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.Addr{}
	}
	ip := ta.AddrPort().Addr().Unmap()
	if ip.Is6() {
		if p, err := ip.Prefix(64); err == nil {
			return p.Addr()
		}
	}
	return ip
}

// admit decides, under s.mu, whether a connection accepted from source
// may be served, evicting a pending connection to make room when a bound
// is reached. It returns why not when it may not.
func (s *Server) admit(source netip.Addr, now time.Time) (refused string) {
	if len(s.pending[source]) >= s.opts.maxPendingPerSource {
		if !s.evictOldest(s.pending[source], now) {
			return "too many connections from this address waiting for their handshake"
		}
	}
	if s.waiting >= s.opts.maxPending || len(s.conns) >= s.opts.maxConns {
		// Make room at the expense of the address with the most pending.
		var most []*pendingConn
		for _, q := range s.pending {
			if len(q) > len(most) {
				most = q
			}
		}
		evicted := s.evictOldest(most, now)
		for _, q := range s.pending {
			if evicted {
				break
			}
			evicted = s.evictOldest(q, now)
		}
		if !evicted {
			if len(s.conns) >= s.opts.maxConns {
				return "too many open connections"
			}
			return "too many connections waiting for their handshake"
		}
	}
	return ""
}

// evictOldest closes the oldest evictable connection of q (in accept
// order), reporting whether there was one.
func (s *Server) evictOldest(q []*pendingConn, now time.Time) bool {
	for _, pc := range q {
		if (!pc.spoke && !hasData(pc.gc.Conn)) || now.Sub(pc.accepted) >= s.opts.evictAfter {
			s.unpend(pc)
			pc.evicted = true
			delete(s.conns, pc.gc)
			s.rejected.Add(1)
			s.log.Debug("evicted a pending connection to make room", "remote", pc.gc.RemoteAddr().String(), "silent", !pc.spoke, "age", now.Sub(pc.accepted))
			_ = pc.gc.Close()
			return true
		}
	}
	return false
}

// pend counts pc as pending, under s.mu.
func (s *Server) pend(pc *pendingConn) {
	s.pending[pc.source] = append(s.pending[pc.source], pc)
	s.waiting++
}

// unpend stops counting pc as pending, under s.mu.
func (s *Server) unpend(pc *pendingConn) {
	q := s.pending[pc.source]
	for i, p := range q {
		if p == pc {
			q = append(q[:i], q[i+1:]...)
			break
		}
	}
	if len(q) == 0 {
		delete(s.pending, pc.source)
	} else {
		s.pending[pc.source] = q
	}
	s.waiting--
}
