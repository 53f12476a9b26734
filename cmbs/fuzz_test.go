package cmbs_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cmbs/cmbs/cmbs"
	"github.com/cmbs/cmbs/cmbs/transport"
)

// FuzzReceive sends arbitrary bodies to a member's L1, L2 and L4 sockets:
// each is answered, with an acknowledgement or a bad_message error, and
// never by a panic, a timeout or a failure of the receiver itself.
func FuzzReceive(f *testing.F) {
	n := startNode(f, "R", "pycmbs", testOptions())
	loc := n.createMember("r", withSockets(f, member{"neighbors_socket": []any{}, "topics": []any{"t"}}))
	sockets := []string{n.startLayer(loc, "l1"), n.startLayer(loc, "l2"), n.startLayer(loc, "l4")}
	cl := transport.NewClient(transport.WithRequestTimeout(5 * time.Second))
	f.Cleanup(func() { _ = cl.Close() })

	for _, seed := range []string{
		`{}`,
		`{"id":"m1","attributes":{"cmbs":{"message":{"storable":"True","executable":"true","message_content":"x"}}}}`,
		`{"id":"m2","attributes":{"cmbs":{"message":{"storable":"maybe","path_history":"not a list"}}}}`,
		`{"id":"m3","attributes":{"cmbs":{"message":{"sendable":"False","providers":["r"],"topics":["t"],"path_history":[1,{"a":null}]}}}}`,
		`{"id":"m4","kind":"http://houssem.org/cmbs#message","mixins":["http://houssem.org/cmbs#l1",7],"title":5,"attributes":{"cmbs":{"message":{"message_content":{"attributes":{"cmbs":{"member":{"l1_socket":"tcp://127.0.0.1:1"}}},"id":"x"}}}}}`,
		`{"id":"","attributes":null}`,
		`{"id":"/../x","attributes":{"cmbs":{"message":{"storable":"true"}}}}`,
	} {
		for layer := range sockets {
			f.Add(uint8(layer), []byte(seed))
		}
	}
	// A body without an id takes the envelope's: a fresh one each time, so
	// that inputs are stored, executed and forwarded rather than dropped
	// as repeats of the first.
	var ids atomic.Uint64
	f.Fuzz(func(t *testing.T, layer uint8, body []byte) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		id := fmt.Sprintf("fuzz-%d", ids.Add(1))
		_, err := cl.Request(ctx, sockets[int(layer)%len(sockets)], transport.Envelope{ID: id, MimeType: cmbs.MessageMimeType, Body: body})
		var re *transport.RemoteError
		switch {
		case err == nil:
		case errors.As(err, &re) && re.Code == cmbs.CodeBadMessage:
		default:
			t.Fatalf("body %q: %v", body, err)
		}
	})
}
