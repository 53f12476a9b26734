package transport_test

import (
	"context"
	"fmt"
	"time"

	"github.com/cmbs/cmbs/cmbs/transport"
)

func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// An L1-style server: answer every message with a small JSON reply.
	srv, err := transport.Listen(ctx, "tcp://127.0.0.1:0",
		func(ctx context.Context, req transport.Envelope) (transport.Envelope, error) {
			return req.Reply("application/json", []byte(`{"sockets_l1":[]}`)), nil
		})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer srv.Close()

	c := transport.NewClient(transport.WithRequestTimeout(2 * time.Second))
	defer c.Close()

	reply, err := c.Request(ctx, srv.Addr(), transport.Envelope{
		ID:       "msg-1",
		MimeType: "application/occi+json",
		Body:     []byte(`{"kind":"http://houssem.org/cmbs#message"}`),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(reply.ID, reply.MimeType, string(reply.Body))

	// Acknowledged fan-out (L2/L3.2): one Result per endpoint.
	for _, r := range c.Deliver(ctx, []string{srv.Addr()}, transport.Envelope{
		ID: "broadcast-1", MimeType: "application/occi+json", Body: []byte(`{}`),
	}) {
		fmt.Println(r.Err == nil, r.Reply.ID)
	}
	// Output:
	// msg-1 application/json {"sockets_l1":[]}
	// true broadcast-1
}
