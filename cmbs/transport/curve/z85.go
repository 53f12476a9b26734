package curve

import (
	"errors"
	"fmt"
)

// z85Alphabet is Z85's (rfc.zeromq.org 32/Z85) 85 characters in value order.
const z85Alphabet = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"

// z85Values maps a character to its value plus one (0: not in the alphabet).
var z85Values = func() (v [256]byte) {
	for i := 0; i < len(z85Alphabet); i++ {
		v[z85Alphabet[i]] = byte(i + 1)
	}
	return v
}()

// EncodeZ85 encodes b, whose length must be a multiple of 4, as Z85.
func EncodeZ85(b []byte) (string, error) {
	if len(b)%4 != 0 {
		return "", fmt.Errorf("curve: Z85 encodes multiples of 4 bytes, not %d", len(b))
	}
	out := make([]byte, 0, len(b)/4*5)
	for i := 0; i < len(b); i += 4 {
		v := uint32(b[i])<<24 | uint32(b[i+1])<<16 | uint32(b[i+2])<<8 | uint32(b[i+3])
		var chunk [5]byte
		for j := 4; j >= 0; j-- {
			chunk[j] = z85Alphabet[v%85]
			v /= 85
		}
		out = append(out, chunk[:]...)
	}
	return string(out), nil
}

// ErrZ85 is returned for text that is not valid Z85.
var ErrZ85 = errors.New("curve: not valid Z85")

// DecodeZ85 decodes Z85 text, whose length must be a multiple of 5.
func DecodeZ85(s string) ([]byte, error) {
	if len(s)%5 != 0 {
		return nil, fmt.Errorf("%w: length %d is not a multiple of 5", ErrZ85, len(s))
	}
	out := make([]byte, 0, len(s)/5*4)
	for i := 0; i < len(s); i += 5 {
		var v uint64
		for j := 0; j < 5; j++ {
			d := z85Values[s[i+j]]
			if d == 0 {
				return nil, fmt.Errorf("%w: %q at %d", ErrZ85, s[i+j], i+j)
			}
			v = v*85 + uint64(d-1)
		}
		if v > 0xFFFFFFFF {
			return nil, fmt.Errorf("%w: group at %d overflows 32 bits", ErrZ85, i)
		}
		out = append(out, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
	}
	return out, nil
}
