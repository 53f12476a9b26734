package curve

import (
	"bytes"
	"crypto/rand"
	"testing"

	"golang.org/x/crypto/nacl/box"
)

// The MESSAGE boxes sealed and opened with the session's derived keys are
// NaCl's: byte for byte what box.SealAfterPrecomputation makes, and what
// box.OpenAfterPrecomputation opens, at every length around Salsa20's
// block edges; a changed byte does not open.
func TestMessageBoxesMatchNaCl(t *testing.T) {
	s := &Session{sendPrefix: "CurveZMQMESSAGEC", recvPrefix: "CurveZMQMESSAGEC"}
	if _, err := rand.Read(s.shared[:]); err != nil {
		t.Fatal(err)
	}
	s.messageKeys()
	for _, size := range []int{0, 1, 31, 32, 33, 63, 64, 65, 96, 97, 200, 5000} {
		plain := make([]byte, size)
		if _, err := rand.Read(plain); err != nil {
			t.Fatal(err)
		}
		for _, n := range []uint64{1, 2, 255, 1 << 40} {
			nonce := shortNonce(s.sendPrefix, n)
			want := box.SealAfterPrecomputation([]byte("head"), plain, nonce, &s.shared)
			got := sealMessage([]byte("head"), plain, n, &s.sendKey)
			if !bytes.Equal(got, want) {
				t.Fatalf("size %d nonce %d: sealed box differs from NaCl's", size, n)
			}
			opened, ok := openMessage(bytes.Clone(want[4:]), n, &s.recvKey)
			if !ok || !bytes.Equal(opened, plain) {
				t.Fatalf("size %d nonce %d: NaCl's box did not open to its plaintext (ok %v)", size, n, ok)
			}
			if nacl, ok := box.OpenAfterPrecomputation(nil, got[4:], nonce, &s.shared); !ok || !bytes.Equal(nacl, plain) {
				t.Fatalf("size %d nonce %d: NaCl did not open the box", size, n)
			}
			for _, at := range []int{4, 4 + box.Overhead - 1, len(want) - 1} {
				if at >= len(want) {
					continue
				}
				bad := bytes.Clone(want[4:])
				bad[at-4] ^= 1
				if _, ok := openMessage(bad, n, &s.recvKey); ok {
					t.Fatalf("size %d nonce %d: a box changed at %d opened", size, n, at)
				}
			}
			if _, ok := openMessage(bytes.Clone(want[4:]), n+1, &s.recvKey); ok {
				t.Fatalf("size %d: a box opened under another nonce", size)
			}
		}
	}
}
