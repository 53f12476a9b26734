package main

import (
	"flag"
	"fmt"

	"github.com/cmbs/cmbs/cmbs"
	"github.com/cmbs/cmbs/cmbs/transport/curve"
)

// curveFlags are the CURVE flags as given.
type curveFlags struct {
	key, clients, servers string
	genOnly               bool // --curve-keygen
}

// keygenDone is parseConfig's answer to --curve-keygen: the key file
// exists (created if it did not), and run prints its public key and exits 0.
type keygenDone struct{ public string }

func (keygenDone) Error() string { return "key generated" }

// keygen creates the --curve-key file if missing and returns keygenDone.
func (f curveFlags) keygen() error {
	if f.key == "" {
		return badConfig("curve-keygen", "needs --curve-key FILE")
	}
	keys, _, err := curve.LoadOrCreateKeyFile(f.key)
	if err != nil {
		return badConfig("curve-key", "%v", err)
	}
	return keygenDone{public: keys.Public.String()}
}

func (f *curveFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.key, "curve-key", "", "`file` with this server's CURVE secret key (Z85; created 0600 if missing, public key in FILE.pub): every CMBS layer and bus socket then speaks ZMTP-CURVE, refuses NULL peers, and may bind beyond loopback")
	fs.StringVar(&f.clients, "curve-clients", "", "`file` of authorised CURVE client public keys (layer and bus sockets), one Z85 key a line (default: any CURVE client, encryption only)")
	fs.BoolVar(&f.genOnly, "curve-keygen", false, "create the --curve-key file if it is missing, print its public key and exit")
	fs.StringVar(&f.servers, "curve-servers", "", "`file` of \"tcp://host:port Z85KEY\" lines: the key each peer socket must present (more are learned from discovery replies)")
}

// load reads the key files; nil without --curve-key.
func (f curveFlags) load() (*cmbs.CurveOptions, error) {
	if f.key == "" {
		switch {
		case f.clients != "":
			return nil, badConfig("curve-clients", "needs --curve-key")
		case f.servers != "":
			return nil, badConfig("curve-servers", "needs --curve-key")
		}
		return nil, nil
	}
	keys, _, err := curve.LoadOrCreateKeyFile(f.key)
	if err != nil {
		return nil, badConfig("curve-key", "%v", err)
	}
	o := &cmbs.CurveOptions{Keys: keys}
	if f.clients != "" {
		if o.Clients, err = curve.ReadKeyList(f.clients); err != nil {
			return nil, badConfig("curve-clients", "%v", err)
		}
		if len(o.Clients) == 0 {
			// An empty list would read as "any client": refuse rather
			// than open the sockets to everyone by mistake.
			return nil, badConfig("curve-clients", "%s lists no key", f.clients)
		}
	}
	if f.servers != "" {
		if o.Servers, err = curve.ReadServerKeys(f.servers); err != nil {
			return nil, badConfig("curve-servers", "%v", err)
		}
	}
	return o, nil
}

// curveAttrs are the log attributes of the CURVE configuration.
func curveAttrs(o *cmbs.CurveOptions) []any {
	if o == nil {
		return []any{"curve", false}
	}
	clients := fmt.Sprint(len(o.Clients))
	if len(o.Clients) == 0 {
		clients = "any"
	}
	return []any{"curve", true, "curve_public_key", o.Keys.Public.String(), "curve_clients", clients, "curve_servers", len(o.Servers)}
}
