// Package basicauth guards an HTTP handler with HTTP Basic authentication
// (RFC 7617) against a users file.
//
// The users file holds one "user:password" per line. Blank lines and lines
// whose first non-blank character is '#' are ignored. The password is either
// a bcrypt hash ("$2a$", "$2b$" or "$2y$" prefix, as htpasswd -B writes) or
// plain text. A user name may not contain ':' or white space; everything after
// the first ':' is the password, so passwords may contain ':' and '#'.
//
// Rejections never say whether the user exists: an unknown user costs the
// same kind of comparison as a wrong password and gets the same answer.
package basicauth

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"unicode"

	"golang.org/x/crypto/bcrypt"
)

// Realm is the protection space announced in WWW-Authenticate.
const Realm = "cmbs"

// Users is a loaded users file. It is safe for concurrent use.
type Users struct {
	creds map[string]credential
	// dummy is compared against when the user is unknown, so that an unknown
	// user takes as long as a known one with a wrong password. It is the
	// costliest bcrypt hash in the file, or nil when every password is plain.
	dummy []byte

	// verified remembers, per user, the SHA-256 of the last password that
	// matched that user's bcrypt hash. bcrypt costs tens of milliseconds by
	// design; paying that on every request of a busy client would make the
	// server slow, while a remembered digest is checked in constant time.
	// One slot per user keeps it bounded whatever clients send.
	mu       sync.Mutex
	verified map[string][sha256.Size]byte
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
		creds:    map[string]credential{},
		verified: map[string][sha256.Size]byte{},
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
	return u, nil
}

func isBcrypt(s string) bool {
	return strings.HasPrefix(s, "$2a$") || strings.HasPrefix(s, "$2b$") || strings.HasPrefix(s, "$2y$")
}

// Len returns the number of users.
func (u *Users) Len() int { return len(u.creds) }

// Check reports whether the password is right for the user.
func (u *Users) Check(name, password string) bool {
	digest := sha256.Sum256([]byte(password))
	c, known := u.creds[name]
	if !known {
		// Spend what a known user would cost, then refuse.
		if u.dummy != nil {
			_ = bcrypt.CompareHashAndPassword(u.dummy, []byte(password))
		} else {
			var zero [sha256.Size]byte
			subtle.ConstantTimeCompare(zero[:], digest[:])
		}
		return false
	}
	if c.bcrypt == nil {
		return subtle.ConstantTimeCompare(c.plain[:], digest[:]) == 1
	}
	u.mu.Lock()
	seen, ok := u.verified[name]
	u.mu.Unlock()
	if ok && subtle.ConstantTimeCompare(seen[:], digest[:]) == 1 {
		return true
	}
	if bcrypt.CompareHashAndPassword(c.bcrypt, []byte(password)) != nil {
		return false
	}
	u.mu.Lock()
	u.verified[name] = digest
	u.mu.Unlock()
	return true
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
// request 401 with a JSON error body.
func (u *Users) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, password, ok := r.BasicAuth()
		if !ok {
			unauthorized(w, "authentication required")
			return
		}
		if !u.Check(name, password) {
			unauthorized(w, "invalid credentials")
			return
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

func unauthorized(w http.ResponseWriter, msg string) {
	var body errorBody
	body.Error.Status = http.StatusUnauthorized
	body.Error.Message = msg
	b, _ := json.Marshal(body) // cannot fail: strings and ints only
	h := w.Header()
	h.Set("WWW-Authenticate", `Basic realm="`+Realm+`"`)
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusUnauthorized)
	_, _ = w.Write(append(b, '\n'))
}
