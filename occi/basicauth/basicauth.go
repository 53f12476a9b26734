// Package basicauth guards an HTTP handler with HTTP Basic authentication
// (RFC 7617) against a users file.
//
// The users file holds one "user:password" per line. Blank lines and lines
// whose first non-blank character is '#' are ignored. The password is either
// a bcrypt hash ("$2a$", "$2b$" or "$2y$" prefix, as htpasswd -B writes) or
// plain text. A user name may not contain ':' or white space; everything after
// the first ':' is the password, so passwords may contain ':' and '#'.
//
// Rejections never say whether the user exists: an unknown user gets the
// same answer as a wrong password, after about the same time. Failed
// attempts are limited per source address (429 with Retry-After beyond),
// and verified user+password pairs are remembered for a while, so that a
// flood of wrong passwords can neither keep the CPU busy with bcrypt nor
// slow down the users who know theirs.
package basicauth

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	"golang.org/x/crypto/bcrypt"

	"github.com/cmbs/cmbs/occi/model"
)

// Realm is the protection space announced in WWW-Authenticate.
const Realm = "cmbs"

// Defaults of the failure limit and the verification cache.
const (
	// DefaultFailureBurst is how many failed authentications one source
	// may have before it is answered 429.
	DefaultFailureBurst = 10
	// DefaultFailureInterval is how often a source earns one more attempt.
	DefaultFailureInterval = time.Second
	// DefaultCacheTTL is how long a verified user+password is remembered.
	DefaultCacheTTL = 2 * time.Minute
	// maxCached bounds the verification cache; maxSources the sources whose
	// failures are counted.
	maxCached  = 1024
	maxSources = 10000
)

// Users is a loaded users file. It is safe for concurrent use.
type Users struct {
	creds map[string]credential
	// dummy is the costliest bcrypt hash in the file, or nil when every
	// password is plain; an unknown user waits as long as a comparison
	// against it takes (see wait).
	dummy     []byte
	dummyCost int

	// FailureBurst and FailureInterval limit failed authentications per
	// source address; CacheTTL is how long a verified user+password is
	// remembered. Load sets the defaults; change them before serving.
	FailureBurst    int
	FailureInterval time.Duration
	CacheTTL        time.Duration
	// now is the clock (tests stop it).
	now func() time.Time

	mu sync.Mutex
	// verified remembers digests of user+password pairs that matched, until
	// their expiry: bcrypt costs tens of milliseconds by design, and a
	// busy client would pay it on every request. Bounded by maxCached.
	verified map[[sha256.Size]byte]time.Time
	// failures counts failed attempts per source (see sourceKey).
	failures map[string]*bucket
	// bcryptNanos is a moving average of how long a comparison against a
	// hash of the dummy's cost takes, under the current load.
	bcryptNanos atomic.Int64
	// compares counts bcrypt comparisons (for tests).
	compares atomic.Int64
}

type credential struct {
	// bcrypt is the hash when the password is stored hashed.
	bcrypt []byte
	// plain is the SHA-256 of a plain-text password; comparing digests
	// keeps the comparison constant-time regardless of password length.
	plain [sha256.Size]byte
}

// Load reads and validates a users file. Errors name the file and, for
// content problems, the line number.
func Load(path string) (*Users, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("users file: %w", err)
	}
	u, err := parse(data)
	if err != nil {
		return nil, fmt.Errorf("users file %s: %w", path, err)
	}
	return u, nil
}

// parse builds Users from the contents of a users file.
func parse(data []byte) (*Users, error) {
	u := &Users{
		creds:           map[string]credential{},
		verified:        map[[sha256.Size]byte]time.Time{},
		failures:        map[string]*bucket{},
		FailureBurst:    DefaultFailureBurst,
		FailureInterval: DefaultFailureInterval,
		CacheTTL:        DefaultCacheTTL,
		now:             time.Now,
	}
	firstLine := map[string]int{}
	dummyCost := -1
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, password, ok := strings.Cut(line, ":")
		switch {
		case !ok:
			return nil, fmt.Errorf("line %d: want user:password", n)
		case name == "":
			return nil, fmt.Errorf("line %d: empty user name", n)
		case strings.IndexFunc(name, unicode.IsSpace) >= 0:
			return nil, fmt.Errorf("line %d: user name %q contains white space", n, name)
		case password == "":
			return nil, fmt.Errorf("line %d: empty password for user %q", n, name)
		}
		if prev, dup := firstLine[name]; dup {
			return nil, fmt.Errorf("line %d: duplicate user %q (first on line %d)", n, name, prev)
		}
		firstLine[name] = n

		var c credential
		if isBcrypt(password) {
			cost, err := bcrypt.Cost([]byte(password))
			if err != nil {
				return nil, fmt.Errorf("line %d: user %q: malformed bcrypt hash: %w", n, name, err)
			}
			c.bcrypt = []byte(password)
			if cost > dummyCost {
				dummyCost, u.dummy = cost, c.bcrypt
			}
		} else {
			c.plain = sha256.Sum256([]byte(password))
		}
		u.creds[name] = c
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(u.creds) == 0 {
		return nil, errors.New("no users defined")
	}
	u.dummyCost = dummyCost
	if u.dummy != nil {
		// One comparison up front, so the first unknown user already waits
		// about as long as a known one.
		u.compare(u.dummy, "not the password")
	}
	return u, nil
}

func isBcrypt(s string) bool {
	return strings.HasPrefix(s, "$2a$") || strings.HasPrefix(s, "$2b$") || strings.HasPrefix(s, "$2y$")
}

// Len returns the number of users.
func (u *Users) Len() int { return len(u.creds) }

// Check reports whether the password is right for the user. It is Verify
// without a deadline.
func (u *Users) Check(name, password string) bool {
	return u.Verify(context.Background(), name, password)
}

// Verify reports whether the password is right for the user. A pair
// verified within CacheTTL is accepted from the cache. An unknown user
// costs no bcrypt comparison, but waits as long as one takes (or until ctx
// ends), so response times do not tell unknown users from wrong passwords.
func (u *Users) Verify(ctx context.Context, name, password string) bool {
	key := pairKey(name, password)
	return u.cached(key) || u.verify(ctx, key, name, password)
}

// verify is Verify past the cache: key is the pair's pairKey, which a
// success is remembered under.
func (u *Users) verify(ctx context.Context, key [sha256.Size]byte, name, password string) bool {
	c, known := u.creds[name]
	var ok bool
	switch {
	case !known && u.dummy != nil:
		u.wait(ctx)
	case !known:
		var zero [sha256.Size]byte
		digest := sha256.Sum256([]byte(password))
		subtle.ConstantTimeCompare(zero[:], digest[:])
	case c.bcrypt == nil:
		digest := sha256.Sum256([]byte(password))
		ok = subtle.ConstantTimeCompare(c.plain[:], digest[:]) == 1
	default:
		ok = u.compare(c.bcrypt, password)
	}
	if ok {
		u.remember(key)
	}
	return ok
}

// pairKey is the cache key of a user+password pair: a digest, so the cache
// holds no password; the user's length is part of it, so "ab"+"c" and
// "a"+"bc" differ.
func pairKey(name, password string) [sha256.Size]byte {
	h := sha256.New()
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(name)))
	h.Write(n[:])
	h.Write([]byte(name))
	h.Write([]byte(password))
	var k [sha256.Size]byte
	h.Sum(k[:0])
	return k
}

func (u *Users) cached(key [sha256.Size]byte) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	exp, ok := u.verified[key]
	if ok && u.now().Before(exp) {
		return true
	}
	if ok {
		delete(u.verified, key)
	}
	return false
}

func (u *Users) remember(key [sha256.Size]byte) {
	u.mu.Lock()
	defer u.mu.Unlock()
	now := u.now()
	if len(u.verified) >= maxCached {
		for k, exp := range u.verified {
			if !now.Before(exp) {
				delete(u.verified, k)
			}
		}
		for k := range u.verified {
			if len(u.verified) < maxCached {
				break
			}
			delete(u.verified, k) // an arbitrary one: it costs one bcrypt later
		}
	}
	u.verified[key] = now.Add(u.CacheTTL)
}

// compare is one bcrypt comparison; comparisons at the dummy's cost feed the
// moving average unknown users wait.
func (u *Users) compare(hash []byte, password string) bool {
	u.compares.Add(1)
	start := time.Now()
	ok := bcrypt.CompareHashAndPassword(hash, []byte(password)) == nil
	if cost, err := bcrypt.Cost(hash); err == nil && cost == u.dummyCost {
		took := time.Since(start).Nanoseconds()
		if old := u.bcryptNanos.Load(); old == 0 {
			u.bcryptNanos.Store(took)
		} else {
			u.bcryptNanos.Store(old + (took-old)/8)
		}
	}
	return ok
}

// wait spends the time a bcrypt comparison takes, without the CPU.
func (u *Users) wait(ctx context.Context) {
	t := time.NewTimer(time.Duration(u.bcryptNanos.Load()))
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// bucket holds a source's remaining attempts.
type bucket struct {
	tokens float64
	last   time.Time
}

// sourceKey is what failures are counted by: the client's IP address
// (RemoteAddr: a proxy's forwarding headers are not trusted), IPv6 by /64,
// which is what one host usually has.
func sourceKey(remoteAddr string) string {
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return remoteAddr
	}
	a := ap.Addr().Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

// take spends one of the source's attempts; when none is left it returns
// false and how long until the next one.
func (u *Users) take(source string) (bool, time.Duration) {
	u.mu.Lock()
	defer u.mu.Unlock()
	now := u.now()
	b := u.failures[source]
	if b == nil {
		if len(u.failures) >= maxSources {
			u.pruneLocked(now)
		}
		if len(u.failures) >= maxSources {
			// Too many sources at once: the newcomers share one bucket.
			source = ""
			b = u.failures[source]
		}
		if b == nil {
			b = &bucket{tokens: float64(u.FailureBurst), last: now}
			u.failures[source] = b
		}
	}
	u.refillLocked(b, now)
	if b.tokens < 1 {
		return false, time.Duration((1 - b.tokens) * float64(u.FailureInterval))
	}
	b.tokens--
	return true, 0
}

// refund gives back an attempt that turned out to be a success.
func (u *Users) refund(source string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if b := u.failures[source]; b != nil {
		b.tokens = min(b.tokens+1, float64(u.FailureBurst))
	}
}

func (u *Users) refillLocked(b *bucket, now time.Time) {
	if u.FailureInterval > 0 && now.After(b.last) {
		b.tokens = min(float64(u.FailureBurst), b.tokens+float64(now.Sub(b.last))/float64(u.FailureInterval))
	}
	b.last = now
}

// pruneLocked forgets the sources whose attempts are all back.
func (u *Users) pruneLocked(now time.Time) {
	for k, b := range u.failures {
		u.refillLocked(b, now)
		if b.tokens >= float64(u.FailureBurst) {
			delete(u.failures, k)
		}
	}
}

type userKey struct{}

// User returns the authenticated user name the middleware put in the
// request's context.
func User(ctx context.Context) (string, bool) {
	name, ok := ctx.Value(userKey{}).(string)
	return name, ok
}

// Middleware lets requests with valid Basic credentials through to next, with
// the user name in the request context (see User), and answers every other
// request 401 (or 429) with a JSON error body.
func (u *Users) Middleware(next http.Handler) http.Handler {
	return u.MiddlewareWith(next, nil)
}

// ErrorWriter writes a refusal to the client; err carries its status as a
// *model.Error. The OCCI server's WriteError renders it as the client asked.
type ErrorWriter func(w http.ResponseWriter, r *http.Request, err error)

// MiddlewareWith is Middleware writing its 401 and 429 answers with
// writeErr (nil: a JSON error body). The WWW-Authenticate, Retry-After
// and Cache-Control headers are set before writeErr is called.
func (u *Users) MiddlewareWith(next http.Handler, writeErr ErrorWriter) http.Handler {
	if writeErr == nil {
		writeErr = writeJSONError
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, password, ok := r.BasicAuth()
		if !ok {
			unauthorized(w, r, writeErr, "authentication required")
			return
		}
		if key := pairKey(name, password); !u.cached(key) {
			// Every attempt that needs verifying spends one of the source's
			// attempts; a success gives it back, so only failures count.
			source := sourceKey(r.RemoteAddr)
			if ok, retry := u.take(source); !ok {
				tooManyFailures(w, r, writeErr, retry)
				return
			}
			if !u.verify(r.Context(), key, name, password) {
				unauthorized(w, r, writeErr, "invalid credentials")
				return
			}
			u.refund(source)
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), userKey{}, name)))
	})
}

// errorBody is the JSON error shape the OCCI server uses everywhere.
type errorBody struct {
	Error struct {
		Status  int    `json:"status"`
		Message string `json:"message"`
	} `json:"error"`
}

func unauthorized(w http.ResponseWriter, r *http.Request, writeErr ErrorWriter, msg string) {
	w.Header().Set("WWW-Authenticate", `Basic realm="`+Realm+`"`)
	refuse(w, r, writeErr, model.Errorf(http.StatusUnauthorized, "%s", msg))
}

// tooManyFailures answers a source that has used up its attempts.
func tooManyFailures(w http.ResponseWriter, r *http.Request, writeErr ErrorWriter, retry time.Duration) {
	secs := int(math.Ceil(retry.Seconds()))
	if secs < 1 {
		secs = 1
	}
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	refuse(w, r, writeErr, model.Errorf(http.StatusTooManyRequests, "too many failed authentications from this address; retry in %d s", secs))
}

func refuse(w http.ResponseWriter, r *http.Request, writeErr ErrorWriter, err error) {
	w.Header().Set("Cache-Control", "no-store")
	writeErr(w, r, err)
}

// writeJSONError writes err as the OCCI server's JSON error body, without
// HTML escaping (as the server's own errors).
func writeJSONError(w http.ResponseWriter, _ *http.Request, err error) {
	var body errorBody
	body.Error.Status = model.StatusOf(err)
	body.Error.Message = err.Error()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(body.Error.Status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(body) // cannot fail: strings and ints only
}
