package curve

import (
	"bufio"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"golang.org/x/crypto/curve25519"
)

// KeySize is the size of a CURVE public or secret key.
const KeySize = 32

// Key is a Curve25519 public or secret key.
type Key [KeySize]byte

// String is the key's 40-character Z85 form, as libzmq and pyzmq print it.
func (k Key) String() string {
	s, _ := EncodeZ85(k[:])
	return s
}

// ParseKey reads a key's 40-character Z85 form.
func ParseKey(s string) (Key, error) {
	var k Key
	if len(s) != 40 {
		return k, fmt.Errorf("%w: a key is 40 characters, not %d", ErrZ85, len(s))
	}
	b, err := DecodeZ85(s)
	if err != nil {
		return k, err
	}
	copy(k[:], b)
	return k, nil
}

// KeyPair is a long-term (or a connection's transient) key pair.
type KeyPair struct {
	Public, Secret Key
}

// GenerateKeyPair makes a new key pair from rnd (crypto/rand.Reader when nil).
func GenerateKeyPair(rnd io.Reader) (KeyPair, error) {
	if rnd == nil {
		rnd = rand.Reader
	}
	var kp KeyPair
	if _, err := io.ReadFull(rnd, kp.Secret[:]); err != nil {
		return kp, fmt.Errorf("curve: generate key: %w", err)
	}
	kp.Public = PublicKey(kp.Secret)
	return kp, nil
}

// PublicKey derives the public key of a secret key.
func PublicKey(secret Key) Key {
	var pub Key
	p, err := curve25519.X25519(secret[:], curve25519.Basepoint)
	if err == nil {
		copy(pub[:], p)
	}
	return pub
}

// LoadOrCreateKeyFile reads the Z85 secret key in path, or, when path does
// not exist, creates it (mode 0600) with a new key. Either way path+".pub"
// is (re)written with the public key, mode 0644, so that it always matches.
// created says whether a new key was made.
func LoadOrCreateKeyFile(path string) (kp KeyPair, created bool, err error) {
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		text := strings.TrimSpace(string(data))
		secret, perr := ParseKey(text)
		if perr != nil {
			return kp, false, fmt.Errorf("curve: key file %s: %w", path, perr)
		}
		kp = KeyPair{Secret: secret, Public: PublicKey(secret)}
	case errors.Is(err, fs.ErrNotExist):
		if kp, err = GenerateKeyPair(nil); err != nil {
			return kp, false, err
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return kp, false, fmt.Errorf("curve: create key file: %w", err)
		}
		_, werr := f.WriteString(kp.Secret.String() + "\n")
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			return kp, false, fmt.Errorf("curve: write key file %s: %w", path, werr)
		}
		created = true
	default:
		return kp, false, fmt.Errorf("curve: key file: %w", err)
	}
	pub := path + ".pub"
	if old, rerr := os.ReadFile(pub); rerr != nil || strings.TrimSpace(string(old)) != kp.Public.String() {
		if err := os.WriteFile(pub, []byte(kp.Public.String()+"\n"), 0o644); err != nil {
			return kp, created, fmt.Errorf("curve: write public key: %w", err)
		}
	}
	return kp, created, nil
}

// ReadKeyList reads Z85 public keys, one a line; blank lines and lines
// starting with # are skipped (no key starts with '#': a Z85 group starting
// with it would exceed 32 bits).
func ReadKeyList(path string) ([]Key, error) {
	var keys []Key
	err := eachLine(path, func(n int, line string) error {
		k, err := ParseKey(line)
		if err != nil {
			return fmt.Errorf("%s:%d: %w", path, n, err)
		}
		keys = append(keys, k)
		return nil
	})
	return keys, err
}

// ReadServerKeys reads "tcp://host:port Z85KEY" lines: the key the server
// at each endpoint must present. Blank lines and # comments are skipped.
func ReadServerKeys(path string) (map[string]Key, error) {
	keys := make(map[string]Key)
	err := eachLine(path, func(n int, line string) error {
		fields := strings.Fields(line)
		if len(fields) != 2 || !strings.HasPrefix(fields[0], "tcp://") {
			return fmt.Errorf("%s:%d: want \"tcp://host:port KEY\"", path, n)
		}
		k, err := ParseKey(fields[1])
		if err != nil {
			return fmt.Errorf("%s:%d: %w", path, n, err)
		}
		keys[fields[0]] = k
		return nil
	})
	return keys, err
}

func eachLine(path string, fn func(n int, line string) error) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("curve: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if err := fn(n, line); err != nil {
			return fmt.Errorf("curve: %w", err)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("curve: %s: %w", path, err)
	}
	return nil
}
