package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-zeromq/zmq4"
	"github.com/nats-io/nats.go"
)

// rawReqRep times count sequential zmq4 REQ → REP round trips on loopback
// with the broker's frames ([id, mimetype, body] out, [id, mimetype,
// reply] back) and returns the median round trip.
func rawReqRep(ctx context.Context, count int, body, reply []byte) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	endpoint, err := freeSocket()
	if err != nil {
		return 0, err
	}
	rep := zmq4.NewRep(ctx)
	defer rep.Close()
	if err := rep.Listen(endpoint); err != nil {
		return 0, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			msg, err := rep.Recv() // returns when ctx is cancelled or rep closed
			if err != nil {
				return
			}
			if err := rep.Send(zmq4.NewMsgFrom(msg.Frames[0], []byte("application/json"), reply)); err != nil {
				return
			}
		}
	}()
	defer func() { cancel(); rep.Close(); <-done }()

	req := zmq4.NewReq(ctx, zmq4.WithDialerMaxRetries(20))
	defer req.Close()
	if err := req.Dial(endpoint); err != nil {
		return 0, err
	}
	// REQ's Recv ignores ctx: a watchdog closes the socket if a round trip
	// outlives the phase's deadline.
	stopWatch := context.AfterFunc(ctx, func() { req.Close() })
	defer stopWatch()
	ds := make([]time.Duration, 0, count)
	for i := 0; i < count+count/10; i++ {
		start := time.Now()
		if err := req.Send(zmq4.NewMsgFrom([]byte(strconv.Itoa(i)), []byte("application/occi+json"), body)); err != nil {
			return 0, err
		}
		if _, err := req.Recv(); err != nil {
			return 0, err
		}
		if i >= count/10 { // the first tenth warms up
			ds = append(ds, time.Since(start))
		}
	}
	return median(ds), nil
}

// fanoutResult is one fan-out measurement: deliveries counted at the
// receivers over the wall time from the first send to the last delivery.
type fanoutResult struct {
	delivered int
	elapsed   time.Duration
	// cpu is the CPU time the whole process used meanwhile, when
	// measured (processCPU): the rate's cost, whatever else the machine
	// runs.
	cpu time.Duration
}

// cpuPerDelivery is r.cpu per delivery in µs.
func (r fanoutResult) cpuPerDelivery() float64 {
	return float64(r.cpu.Nanoseconds()) / 1000 / float64(max(r.delivered, 1))
}

func (r fanoutResult) rate() float64 { return perSecond(r.delivered, r.elapsed) }

// rawPubSub publishes count messages from one zmq4 PUB to subs SUB sockets
// (all subscribed to everything) and counts what they receive.
func rawPubSub(ctx context.Context, subs, count int, body []byte) (fanoutResult, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	endpoint, err := freeSocket()
	if err != nil {
		return fanoutResult{}, err
	}
	pub := zmq4.NewPub(ctx)
	defer pub.Close()
	if err := pub.Listen(endpoint); err != nil {
		return fanoutResult{}, err
	}
	var measuring atomic.Bool
	var got atomic.Int64
	var lastAt atomic.Int64
	warm := make([]atomic.Bool, subs)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel() // before wg.Wait: the receivers return
	for i := 0; i < subs; i++ {
		sub := zmq4.NewSub(ctx, zmq4.WithDialerMaxRetries(20))
		defer sub.Close()
		if err := sub.Dial(endpoint); err != nil {
			return fanoutResult{}, err
		}
		if err := sub.SetOption(zmq4.OptionSubscribe, ""); err != nil {
			return fanoutResult{}, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				msg, err := sub.Recv()
				if err != nil {
					if ctx.Err() != nil {
						return
					}
					continue // EOF when the PUB goes away: keep going until cancelled
				}
				if len(msg.Frames) > 0 && string(msg.Frames[0]) == "warmup" {
					warm[i].Store(true)
					continue
				}
				if measuring.Load() {
					got.Add(1)
					lastAt.Store(time.Now().UnixNano())
				}
			}
		}()
	}
	// Slow joiner: publish warm-up messages until every SUB has one.
	for ready := false; !ready; {
		if ctx.Err() != nil {
			return fanoutResult{}, errors.New("zmq4 SUB sockets did not receive the warm-up messages")
		}
		if err := pub.Send(zmq4.NewMsgFrom([]byte("warmup"))); err != nil {
			return fanoutResult{}, err
		}
		time.Sleep(5 * time.Millisecond)
		ready = true
		for i := range warm {
			ready = ready && warm[i].Load()
		}
	}
	time.Sleep(20 * time.Millisecond) // let the last warm-ups drain
	measuring.Store(true)
	want := int64(subs * count)
	start := time.Now()
	for i := 0; i < count; i++ {
		if err := pub.Send(zmq4.NewMsgFrom([]byte("bench"), body)); err != nil {
			return fanoutResult{}, err
		}
	}
	return awaitDeliveries(ctx, "zmq4 PUB/SUB", &got, &lastAt, want, start)
}

// awaitDeliveries waits up to 30 s for want deliveries counted in got,
// and reports them as delivered from start to the last one (lastAt).
func awaitDeliveries(ctx context.Context, what string, got, lastAt *atomic.Int64, want int64, start time.Time) (fanoutResult, error) {
	deadline := time.Now().Add(30 * time.Second)
	for got.Load() < want && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(time.Millisecond)
	}
	n := got.Load()
	if n == 0 {
		return fanoutResult{}, fmt.Errorf("%s: nothing delivered", what)
	}
	return fanoutResult{delivered: int(n), elapsed: time.Duration(lastAt.Load() - start.UnixNano())}, nil
}

// natsServerPath finds Debian's nats-server (installed in /usr/sbin).
func natsServerPath() (string, error) {
	if p, err := exec.LookPath("nats-server"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/nats-server", "/usr/local/sbin/nats-server"} {
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	return "", errors.New("nats-server is not installed (Debian: apt-get install -y nats-server)")
}

// natsFanout runs nats-server on a free loopback port as a child process
// and publishes count messages from one connection to subs subscribers on
// connections of their own; deliveries are counted in their handlers.
func natsFanout(ctx context.Context, bin string, subs, count int, body []byte) (fanoutResult, error) {
	return natsRun(ctx, bin, subs, count, body, false)
}

// natsAckedFanout is natsFanout with every delivery acknowledged, as the
// broker's are: each message is published with a reply subject, every
// subscriber answers it, and a delivery counts when its answer is back at
// the publisher.
func natsAckedFanout(ctx context.Context, bin string, subs, count int, body []byte) (fanoutResult, error) {
	return natsRun(ctx, bin, subs, count, body, true)
}

func natsRun(ctx context.Context, bin string, subs, count int, body []byte, acked bool) (fanoutResult, error) {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	endpoint, err := freeSocket()
	if err != nil {
		return fanoutResult{}, err
	}
	_, port, err := net.SplitHostPort(strings.TrimPrefix(endpoint, "tcp://"))
	if err != nil {
		return fanoutResult{}, err
	}
	cmd := exec.CommandContext(ctx, bin, "-a", "127.0.0.1", "-p", port, "-m", "0")
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return fanoutResult{}, err
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	url := "nats://127.0.0.1:" + port
	connect := func() (*nats.Conn, error) {
		var err error
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			var nc *nats.Conn
			if nc, err = nats.Connect(url, nats.Timeout(2*time.Second), nats.NoReconnect()); err == nil {
				return nc, nil
			}
		}
		return nil, fmt.Errorf("connect to nats-server at %s: %w", url, err)
	}
	var got atomic.Int64
	var lastAt atomic.Int64
	for i := 0; i < subs; i++ {
		nc, err := connect()
		if err != nil {
			return fanoutResult{}, err
		}
		defer nc.Close()
		if err := subscribe(nc, "bench", func(m *nats.Msg) {
			if acked {
				_ = m.Respond([]byte("ok"))
				return
			}
			got.Add(1)
			lastAt.Store(time.Now().UnixNano())
		}); err != nil {
			return fanoutResult{}, err
		}
	}
	pub, err := connect()
	if err != nil {
		return fanoutResult{}, err
	}
	defer pub.Close()
	want := int64(subs * count)
	if acked {
		if err := subscribe(pub, "bench.acks", func(*nats.Msg) {
			got.Add(1)
			lastAt.Store(time.Now().UnixNano())
		}); err != nil {
			return fanoutResult{}, err
		}
	}
	start := time.Now()
	for i := 0; i < count; i++ {
		var err error
		if acked {
			err = pub.PublishRequest("bench", "bench.acks", body)
		} else {
			err = pub.Publish("bench", body)
		}
		if err != nil {
			return fanoutResult{}, err
		}
	}
	if err := pub.FlushTimeout(30 * time.Second); err != nil {
		return fanoutResult{}, err
	}
	return awaitDeliveries(ctx, "nats", &got, &lastAt, want, start)
}

// subscribe subscribes nc to subject without a pending limit (the
// benchmark must not drop messages) and returns once the server has the
// subscription.
func subscribe(nc *nats.Conn, subject string, handle nats.MsgHandler) error {
	sub, err := nc.Subscribe(subject, handle)
	if err != nil {
		return err
	}
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		return err
	}
	return nc.FlushTimeout(5 * time.Second)
}

// natsVersion is what nats-server --version says, or "" when it says
// nothing.
func natsVersion(ctx context.Context, bin string) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--version").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}
