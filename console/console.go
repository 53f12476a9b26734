// Package console is cmbs's browser console at /console/: static pages
// embedded in the binary (plain HTML, CSS and JavaScript; nothing fetched
// from elsewhere) that read the OCCI interface — the model from /-/, any
// collection or entity, the CMBS members as a graph with the layers
// /-/status lists — and a stream of live events at /console/events
// (server-sent events) fed by the store's changes feed and by the
// deliveries Delivered is told about.
//
// The console's own routes are read-only and sit behind the same handler
// chain as the API, so they have the same authentication. Its actions
// (an entity's actions, such as a member's start_lN; creating and sending
// a message) are API calls the page makes with the browser's credentials,
// each after an in-page confirmation. One goroutine follows the
// changes feed, while at least one browser listens, from Start until the
// context given to Start ends; Stop waits for it. Each browser gets a bounded buffer of events: one that
// falls behind is disconnected (EventSource reconnects it) rather than
// slowing the feed for everyone.
package console

import (
	"context"
	"embed"
	"encoding/json"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/cmbs/cmbs/store"
	"github.com/cmbs/cmbs/store/feed"
)

// Prefix is where the console is served.
const Prefix = "/console/"

// EventsPath is the server-sent event stream of store changes.
const EventsPath = Prefix + "events"

//go:embed static
var staticFiles embed.FS

// ChangeFeed is what the console needs from the store: its changes feed.
type ChangeFeed = feed.Source

// Options configures a Console.
type Options struct {
	// Feed is followed for live events; required.
	Feed ChangeFeed
	// Logger receives feed errors; nil discards them.
	Logger *slog.Logger
	// SubscriberBuffer is how many events one browser may have waiting
	// before it is disconnected; 0 means 256.
	SubscriberBuffer int
	// PollWait is the long-poll wait of each changes request; 0 means 25 s.
	// A lost feed is read again from the last sequence read, after a
	// backoff (store/feed).
	PollWait time.Duration
	// Heartbeat is how often an idle event stream gets a comment line (so
	// proxies keep it open); 0 means 15 s.
	Heartbeat time.Duration
}

// Console serves the console's pages and event stream.
type Console struct {
	opts   Options
	files  http.Handler
	hub    *hub
	wg     sync.WaitGroup
	mu     sync.Mutex
	cancel context.CancelFunc
}

// New returns a console; Start begins following the feed.
func New(opts Options) *Console {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.SubscriberBuffer <= 0 {
		opts.SubscriberBuffer = 256
	}
	if opts.PollWait <= 0 {
		opts.PollWait = 25 * time.Second
	}
	if opts.Heartbeat <= 0 {
		opts.Heartbeat = 15 * time.Second
	}
	sub, err := fs.Sub(staticFiles, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	return &Console{opts: opts, files: http.StripPrefix(strings.TrimSuffix(Prefix, "/"), http.FileServerFS(sub)), hub: newHub(opts.SubscriberBuffer)}
}

// Start follows the changes feed (from now on) until ctx ends or Stop is
// called; when it ends, every open event stream ends too, so a server
// shutting down is not held by browsers.
func (c *Console) Start(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	c.mu.Lock()
	c.cancel = cancel
	c.mu.Unlock()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer c.hub.close()
		c.follow(ctx)
	}()
}

// Stop ends the feed and waits for it, or for ctx.
func (c *Console) Stop(ctx context.Context) error {
	c.mu.Lock()
	if c.cancel != nil {
		c.cancel()
	}
	c.mu.Unlock()
	done := make(chan struct{})
	go func() { c.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// follow follows the changes feed, through a feed.Follower, while someone
// listens, and publishes each change; with nobody listening it costs the
// store nothing. The follower marks its position when the first browser
// arrives (which sees every change from then on), resumes from the last
// sequence it read after a lost feed, and is stopped when the last one
// leaves.
func (c *Console) follow(ctx context.Context) {
	for ctx.Err() == nil {
		if c.hub.idle() {
			select {
			case <-ctx.Done():
				return
			case <-c.hub.wanted:
				continue // idle again checks there still is a subscriber
			}
		}
		// No coalescing: a browser sees each write as soon as it is read
		// (a document written twice between two reads shows once).
		f, err := feed.New(ctx, c.opts.Feed, feed.Options{Wait: c.opts.PollWait, Coalesce: -1, Logger: c.opts.Logger.With("component", "console")})
		if err != nil {
			if !c.retry(ctx, err) {
				return
			}
			continue
		}
		f.Add("console", c.publishChanges)
		if err := f.Start(ctx); err != nil {
			panic(err) // a new follower, started once
		}
		// Subscribers are let in once the position is marked: they see
		// every change after it.
		c.hub.setFollowing()
		c.followWhileWanted(ctx)
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		if err := f.Stop(stopCtx); err != nil {
			c.opts.Logger.Warn("console: stop following the changes feed", "err", err)
		}
		cancel()
	}
}

// followWhileWanted returns when ctx ends or nobody listens any more.
func (c *Console) followWhileWanted(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.hub.empty:
			if c.hub.idle() {
				return
			}
		}
	}
}

// publishChanges is the console's feed.Handler: each change is sent to
// every open event stream; it never blocks nor fails.
func (c *Console) publishChanges(_ context.Context, changes []store.Change) error {
	for _, ch := range changes {
		b, _ := json.Marshal(change{Seq: ch.Seq, ID: ch.ID, Rev: ch.Rev, Deleted: ch.Deleted})
		c.hub.publish(event{Name: "change", ID: ch.Seq, Data: b})
	}
	return nil
}

// retry logs a feed error and waits a second; false when ctx ended.
func (c *Console) retry(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	c.opts.Logger.Warn("console: changes feed", "err", err)
	select {
	case <-ctx.Done():
		return false
	case <-time.After(time.Second):
		return true
	}
}

// Delivered shows a message a local member received on the open events
// pages (cmbsd calls it from the broker's delivery hook). It never blocks:
// a browser that falls behind is dropped, as for changes.
func (c *Console) Delivered(d Delivery) {
	b, err := json.Marshal(d)
	if err != nil {
		return
	}
	c.hub.publish(event{Name: "delivery", Data: b})
}

// ServeHTTP serves the pages under Prefix and the event stream.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == EventsPath {
		c.serveEvents(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "the console is read-only: "+r.Method+" is not allowed", http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	// The pages only talk to this server.
	w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
	c.files.ServeHTTP(w, r)
}

// Mount serves the console under Prefix (and redirects /console to it)
// and everything else with next.
func (c *Console) Mount(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, Prefix):
			c.ServeHTTP(w, r)
		case r.URL.Path == strings.TrimSuffix(Prefix, "/"):
			http.Redirect(w, r, Prefix, http.StatusMovedPermanently)
		default:
			next.ServeHTTP(w, r)
		}
	})
}
