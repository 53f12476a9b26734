package transport

import "sync"

// ConnQuota bounds the open connections of every Server that shares it
// (WithConnQuota), as WithMaxConns bounds one Server's: a process serving
// many sockets keeps its file descriptors for other work (cmbsd: its HTTP
// clients and its store). A connection accepted when the quota is spent is
// closed at once.
type ConnQuota struct {
	mu   sync.Mutex
	max  int
	used int
}

// NewConnQuota returns a quota of n connections (at least 1).
func NewConnQuota(n int) *ConnQuota { return &ConnQuota{max: max(n, 1)} }

// Max returns the quota's bound.
func (q *ConnQuota) Max() int { return q.max }

// InUse returns the connections currently counted.
func (q *ConnQuota) InUse() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.used
}

func (q *ConnQuota) tryAcquire() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.used >= q.max {
		return false
	}
	q.used++
	return true
}

func (q *ConnQuota) release() {
	q.mu.Lock()
	q.used--
	q.mu.Unlock()
}
