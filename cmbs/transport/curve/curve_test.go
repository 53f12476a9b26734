package curve_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cmbs/cmbs/cmbs/transport/curve"
)

// The Z85 specification's example (rfc.zeromq.org 32/Z85).
func TestZ85SpecVector(t *testing.T) {
	raw := []byte{0x86, 0x4F, 0xD2, 0x6F, 0xB5, 0x59, 0xF7, 0x5B}
	s, err := curve.EncodeZ85(raw)
	if err != nil || s != "HelloWorld" {
		t.Fatalf("EncodeZ85 = %q, %v; want HelloWorld", s, err)
	}
	b, err := curve.DecodeZ85("HelloWorld")
	if err != nil || !bytes.Equal(b, raw) {
		t.Fatalf("DecodeZ85 = %x, %v", b, err)
	}
	for _, bad := range []string{"Hell", "Hell~World", "#####"} {
		if _, err := curve.DecodeZ85(bad); !errors.Is(err, curve.ErrZ85) {
			t.Errorf("DecodeZ85(%q) = %v, want ErrZ85", bad, err)
		}
	}
	if _, err := curve.EncodeZ85([]byte{1, 2, 3}); err == nil {
		t.Error("EncodeZ85 of 3 bytes: no error")
	}
}

// libzmq's test key pairs (test_security_curve), confirmed with pyzmq's
// zmq.curve_public.
func TestPublicKeyOfLibzmqTestKeys(t *testing.T) {
	for secret, public := range map[string]string{
		"D:)Q[IlAW!ahhC2ac:9*A}h:p?([4%wOTJ%JR%cs": "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID",
		"JTKVSB%%)wK0E.X)V>+}o?pNmC{O&4W4b!Ni{Lh6": "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7",
	} {
		sk, err := curve.ParseKey(secret)
		if err != nil {
			t.Fatal(err)
		}
		if got := curve.PublicKey(sk).String(); got != public {
			t.Errorf("PublicKey(%s) = %s, want %s", secret, got, public)
		}
	}
}

func TestKeyFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "node.key")
	kp, created, err := curve.LoadOrCreateKeyFile(path)
	if err != nil || !created {
		t.Fatalf("create: %v, created=%v", err, created)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	pub, err := os.ReadFile(path + ".pub")
	if err != nil || strings.TrimSpace(string(pub)) != kp.Public.String() {
		t.Fatalf(".pub = %q, %v; want %s", pub, err, kp.Public)
	}
	again, created, err := curve.LoadOrCreateKeyFile(path)
	if err != nil || created || again != kp {
		t.Fatalf("reload: %v, created=%v, same=%v", err, created, again == kp)
	}
	if err := os.WriteFile(path+".bad", []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := curve.LoadOrCreateKeyFile(path + ".bad"); err == nil {
		t.Fatal("a malformed key file was accepted")
	}

	list := filepath.Join(dir, "clients")
	if err := os.WriteFile(list, []byte("# authorised\n\n"+kp.Public.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	keys, err := curve.ReadKeyList(list)
	if err != nil || len(keys) != 1 || keys[0] != kp.Public {
		t.Fatalf("ReadKeyList = %v, %v", keys, err)
	}
	servers := filepath.Join(dir, "servers")
	if err := os.WriteFile(servers, []byte("tcp://127.0.0.1:5555 "+kp.Public.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sk, err := curve.ReadServerKeys(servers)
	if err != nil || sk["tcp://127.0.0.1:5555"] != kp.Public {
		t.Fatalf("ReadServerKeys = %v, %v", sk, err)
	}
	if err := os.WriteFile(servers, []byte("127.0.0.1:5555 "+kp.Public.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := curve.ReadServerKeys(servers); err == nil || !strings.Contains(err.Error(), ":1:") {
		t.Fatalf("ReadServerKeys of a line without tcp:// = %v, want an error naming line 1", err)
	}
}

type handshakeResult struct {
	s   *curve.Session
	err error
}

// pair runs both sides of a handshake over an in-memory connection.
func pair(t *testing.T, cfg *curve.ServerConfig, client curve.KeyPair, serverKey curve.Key) (cs, ss *curve.Session, cerr, serr error, cc, sc net.Conn) {
	t.Helper()
	cc, sc = net.Pipe()
	t.Cleanup(func() { cc.Close(); sc.Close() })
	_ = cc.SetDeadline(time.Now().Add(10 * time.Second))
	_ = sc.SetDeadline(time.Now().Add(10 * time.Second))
	done := make(chan handshakeResult, 1)
	go func() {
		s, err := curve.Server(sc, sc, cfg, curve.AppendMetadata(nil, [2]string{"Socket-Type", "ROUTER"}))
		if err != nil {
			sc.Close() // as a transport would, so the client's read ends
		}
		done <- handshakeResult{s, err}
	}()
	cs, cerr = curve.Client(cc, cc, client, serverKey, curve.AppendMetadata(nil, [2]string{"Socket-Type", "DEALER"}))
	if cerr != nil {
		cc.Close()
	}
	r := <-done
	return cs, r.s, cerr, r.err, cc, sc
}

func mustKeys(t *testing.T) curve.KeyPair {
	t.Helper()
	kp, err := curve.GenerateKeyPair(nil)
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

// readFrameBody reads one ZMTP frame's body.
func readFrameBody(t *testing.T, r io.Reader) []byte {
	t.Helper()
	var hdr [9]byte
	if _, err := io.ReadFull(r, hdr[:2]); err != nil {
		t.Fatal(err)
	}
	size := uint64(hdr[1])
	if hdr[0]&0x02 != 0 {
		if _, err := io.ReadFull(r, hdr[2:9]); err != nil {
			t.Fatal(err)
		}
		size = binary.BigEndian.Uint64(hdr[1:9])
	}
	body := make([]byte, size)
	if _, err := io.ReadFull(r, body); err != nil {
		t.Fatal(err)
	}
	return body
}

func TestHandshakeAndMessages(t *testing.T) {
	server, client := mustKeys(t), mustKeys(t)
	cfg := &curve.ServerConfig{Keys: server, Authorize: func(k curve.Key) bool { return k == client.Public }}
	cs, ss, cerr, serr, cc, sc := pair(t, cfg, client, server.Public)
	if cerr != nil || serr != nil {
		t.Fatalf("handshake: client %v, server %v", cerr, serr)
	}
	if ss.PeerKey != client.Public || cs.PeerKey != server.Public {
		t.Fatal("peer keys not as expected")
	}
	if ss.PeerMetadata["Socket-Type"] != "DEALER" || cs.PeerMetadata["Socket-Type"] != "ROUTER" {
		t.Fatalf("metadata: server saw %v, client saw %v", ss.PeerMetadata, cs.PeerMetadata)
	}
	// Both ways, a short and a long (> 255 bytes) frame each.
	for _, dir := range []struct {
		from, to *curve.Session
		w        net.Conn
		r        net.Conn
	}{{cs, ss, cc, sc}, {ss, cs, sc, cc}} {
		for _, payload := range [][]byte{[]byte("hello"), bytes.Repeat([]byte("x"), 1000)} {
			frame := dir.from.AppendMessage(nil, curve.FlagMore, payload)
			go func() { _, _ = dir.w.Write(frame) }()
			body := readFrameBody(t, dir.r)
			flags, got, err := dir.to.Open(body)
			if err != nil || flags != curve.FlagMore || !bytes.Equal(got, payload) {
				t.Fatalf("Open = %x, %d bytes, %v", flags, len(got), err)
			}
			// The same frame again is a replay.
			if _, _, err := dir.to.Open(body); !errors.Is(err, curve.ErrMalformed) {
				t.Fatalf("replayed MESSAGE: %v, want ErrMalformed", err)
			}
		}
	}
	// A tampered box does not open.
	frame := cs.AppendMessage(nil, 0, []byte("data"))
	frame[len(frame)-1] ^= 1
	if _, _, err := ss.Open(frame[2:]); !errors.Is(err, curve.ErrMalformed) {
		t.Fatalf("tampered MESSAGE: %v", err)
	}
}

func TestHandshakeRefusals(t *testing.T) {
	server, client, other := mustKeys(t), mustKeys(t), mustKeys(t)

	t.Run("wrong server key", func(t *testing.T) {
		cfg := &curve.ServerConfig{Keys: server}
		_, _, cerr, serr, _, _ := pair(t, cfg, client, other.Public)
		if serr == nil || cerr == nil {
			t.Fatalf("client %v, server %v: want both to fail", cerr, serr)
		}
		if cfg.Refused() != 1 {
			t.Fatalf("refused = %d, want 1", cfg.Refused())
		}
	})
	t.Run("unauthorised client", func(t *testing.T) {
		cfg := &curve.ServerConfig{Keys: server, Authorize: func(k curve.Key) bool { return k == other.Public }}
		_, _, cerr, serr, _, _ := pair(t, cfg, client, server.Public)
		var pe *curve.PeerError
		if !errors.Is(serr, curve.ErrUnauthorized) || !errors.As(cerr, &pe) {
			t.Fatalf("client %v, server %v: want PeerError and ErrUnauthorized", cerr, serr)
		}
		if cfg.Refused() != 1 {
			t.Fatalf("refused = %d, want 1", cfg.Refused())
		}
	})
	t.Run("any client without Authorize", func(t *testing.T) {
		cfg := &curve.ServerConfig{Keys: server}
		_, _, cerr, serr, _, _ := pair(t, cfg, other, server.Public)
		if cerr != nil || serr != nil {
			t.Fatalf("client %v, server %v", cerr, serr)
		}
	})
}

// A frame announcing more than its command can hold is refused before its
// body is read, let alone allocated.
func TestHandshakeRefusesOversizedCommand(t *testing.T) {
	server := mustKeys(t)
	cfg := &curve.ServerConfig{Keys: server}
	for _, hdr := range [][]byte{
		{0x06, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}, // long command of ~1 TiB
		{0x04, 201},              // one byte over HELLO
		{0x04, 199},              // one byte short
		{0x00, 200},              // a message frame, not a command
		{0x05, 200},              // a command with MORE
		{0x06, 0, 0, 0, 0, 0, 0}, // truncated long header
	} {
		_, err := curve.Server(bytes.NewReader(hdr), io.Discard, cfg, nil)
		if err == nil {
			t.Errorf("header %x accepted", hdr)
		}
	}
	if cfg.Refused() != 6 {
		t.Errorf("refused = %d, want 6", cfg.Refused())
	}
}

func TestMetadata(t *testing.T) {
	b := curve.AppendMetadata(nil, [2]string{"Socket-Type", "REQ"}, [2]string{"Identity", ""})
	md, err := curve.ParseMetadata(b)
	if err != nil || md["Socket-Type"] != "REQ" || len(md) != 2 {
		t.Fatalf("ParseMetadata = %v, %v", md, err)
	}
	for _, bad := range [][]byte{{0}, {3, 'a', 'b'}, {1, 'a', 0, 0, 1, 0}} {
		if _, err := curve.ParseMetadata(bad); err == nil {
			t.Errorf("ParseMetadata(%x) accepted", bad)
		}
	}
}
