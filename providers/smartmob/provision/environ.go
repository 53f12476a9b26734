package provision

import (
	"sort"
	"strings"
)

// Environ merges layers in order (later wins) over base ("K=V" entries), sorted, one entry per key.
// A base entry without '=' is dropped; among duplicate base keys the last wins. Layer keys that
// are empty or hold '=' or NUL, and values holding NUL, are dropped (exec could not pass them).
func Environ(base []string, layers ...map[string]string) []string {
	m := map[string]string{}
	for _, kv := range base {
		if k, v, ok := strings.Cut(kv, "="); ok && k != "" {
			m[k] = v
		}
	}
	for _, l := range layers {
		for k, v := range l {
			if k != "" && !strings.ContainsAny(k, "=\x00") && !strings.ContainsRune(v, 0) {
				m[k] = v
			}
		}
	}
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}
