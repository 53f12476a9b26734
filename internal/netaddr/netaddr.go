// Package netaddr classifies the addresses cmbsd is asked to listen on.
package netaddr

import (
	"net/netip"
	"strings"
)

// LoopbackHost reports whether host (without port) is loopback only:
// localhost, or an IP in 127.0.0.0/8 or ::1. Other host names are not
// trusted to be, and an empty host means every interface.
func LoopbackHost(host string) bool {
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}
