// Command cmbsd is the cmbs server: an OCCI server whose categories and
// entities live in an embedded sqlite store or in CouchDB, and which hosts
// the CMBS member and message providers.
//
// Usage:
//
//	cmbsd [--listen 127.0.0.1:8090] [--store sqlite:./cmbs-data/cmbs.db | --store http://user:pass@host:5984 --db cmbs]
//	      [--public-url URL] [--users FILE] [--insecure] [--log-level info] [--log-format text|json]
//	      [--max-body BYTES] [--max-attributes N] [--max-output BYTES] [--run-dir DIR]
//	      [--curve-key FILE [--curve-clients FILE] [--curve-servers FILE]]
//	cmbsd --version
//
// Every flag also reads CMBS_<FLAG> from the environment (CMBS_LISTEN,
// CMBS_PUBLIC_URL, …); the command line wins. cmbsd refuses to listen on a
// non-loopback address without --users unless --insecure is given. SIGINT or
// SIGTERM stops accepting connections, lets in-flight requests finish (up to
// --shutdown-timeout), stops the providers, closes the store and exits 0.
//
// Exit codes: 0 after a clean shutdown, 1 when the server fails to start or
// to shut down cleanly, 2 for a bad configuration.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/cmbs/cmbs/cmbs"
	"github.com/cmbs/cmbs/console"
	"github.com/cmbs/cmbs/internal/metrics"
	"github.com/cmbs/cmbs/internal/requestlog"
	"github.com/cmbs/cmbs/occi"
	"github.com/cmbs/cmbs/providers"
	processreg "github.com/cmbs/cmbs/providers/process"
	"github.com/cmbs/cmbs/providers/process/supervisor"
	"github.com/cmbs/cmbs/store"
)

// Exit codes.
const (
	exitOK        = 0
	exitFailure   = 1
	exitBadConfig = 2
)

// startTimeout bounds opening the store and starting the providers, so an
// unreachable CouchDB makes cmbsd fail instead of hang.
const startTimeout = 30 * time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// After the first signal, restore the default handling so that a second
	// one kills a shutdown that is taking too long.
	context.AfterFunc(ctx, stop)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is cmbsd: it serves until ctx is cancelled (main cancels it on SIGINT
// or SIGTERM), then shuts down and returns the exit code. Logs and errors go
// to stderr; only -h and --version output go to stdout.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	cfg, err := parseConfig(args, getenv, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if errors.As(err, new(versionRequest)) {
		fmt.Fprintln(stdout, versionLine())
		return exitOK
	}
	if kg := new(keygenDone); errors.As(err, kg) {
		fmt.Fprintln(stdout, kg.public)
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "cmbsd: invalid configuration: %v\n", err)
		return exitBadConfig
	}

	logger := newLogger(stderr, cfg)
	if err := serve(ctx, cfg, logger); err != nil {
		if ctx.Err() != nil && errors.Is(err, context.Canceled) {
			// A signal during start-up: what was opened is closed again; that
			// is a clean stop, not a failure.
			logger.Info("stopped before start-up completed", "err", err)
			return exitOK
		}
		logger.Error("cmbsd failed", "err", err)
		return exitFailure
	}
	logger.Info("stopped")
	return exitOK
}

// serve wires store, providers and OCCI server, serves until ctx is done and
// shuts everything down in reverse order. Every resource it opens is closed
// before it returns.
func serve(ctx context.Context, cfg config, logger *slog.Logger) (err error) {
	startCtx, cancelStart := context.WithTimeout(ctx, startTimeout)
	defer cancelStart()

	st, err := openStore(ctx, startCtx, cfg, logger)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := st.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("close store: %w", cerr))
		}
	}()
	mreg := metrics.New()
	measured, err := mreg.InstrumentStore(st)
	if err != nil {
		return err
	}
	st = measured

	// Marked before the caches load, so that they miss no change another
	// server sharing the database makes meanwhile.
	follower, err := newFollower(startCtx, cfg, st, logger)
	if err != nil {
		return err
	}

	reg := providers.NewRegistry()
	srv, err := occi.NewServer(startCtx, occi.Options{
		Store:         st,
		Providers:     reg,
		PublicURL:     cfg.PublicURL,
		MaxBodyBytes:  cfg.MaxBody,
		MaxAttributes: cfg.MaxAttributes,
		Logger:        logger,
	})
	if err != nil {
		return fmt.Errorf("start OCCI server: %w", err)
	}
	events := &busEvents{}
	// One supervisor for services and smartmob processes; closed after
	// the providers stopped theirs.
	sup := newSupervisor(logger)
	defer func() {
		if cerr := closeSupervisor(ctx, sup, cfg); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}()
	// The console is started once the server listens; deliveries reach its
	// events page (and the bus) from the broker's hook.
	cons := console.New(console.Options{Feed: st, Logger: logger})
	onDelivery := func(m cmbs.ReceivedMessage) {
		events.delivered(m)
		cons.Delivered(consoleDelivery(m))
	}
	broker, procs, err := registerBuiltinProviders(reg, srv, st, cfg, sup, events, onDelivery, logger)
	if err != nil {
		return fmt.Errorf("register providers: %w", err)
	}
	apps, err := registerSmartmob(reg, srv, st, sup, cfg, events, logger)
	if err != nil {
		return fmt.Errorf("register providers: %w", err)
	}
	// startCtx ends once start-up is done, so a provider must not keep it
	// for its goroutines: those end in Stop.
	if err := reg.Start(startCtx); err != nil {
		return err
	}
	defer func() {
		// Providers get their own deadline: ctx is already cancelled here.
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
		defer cancel()
		if serr := reg.Stop(stopCtx); serr != nil {
			err = errors.Join(err, serr)
		}
		// Updates stored in the background land before the store closes.
		if ferr := srv.Entities().Flush(stopCtx); ferr != nil {
			err = errors.Join(err, ferr)
		}
	}()

	if follower != nil {
		// The categories first: a member batch may need the member kind.
		follower.Add("categories", srv.Categories().ApplyChanges)
		follower.Add("members", broker.ApplyChanges)
		follower.Add("smartmob", apps.ApplyChanges)
		if err := follower.Start(ctx); err != nil {
			return err
		}
		defer func() {
			stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
			defer cancel()
			if ferr := follower.Stop(stopCtx); ferr != nil {
				err = errors.Join(err, ferr)
			}
		}()
	}
	b, _, err := startBus(startCtx, cfg.Bus, cfg.Insecure, cfg.Curve, srv, reg, broker, procs, apps, events, logger)
	if err != nil {
		return fmt.Errorf("start bus: %w", err)
	}
	if b != nil {
		defer func() {
			events.bus.Store(nil)
			if cerr := b.Close(); cerr != nil {
				err = errors.Join(err, fmt.Errorf("close bus: %w", cerr))
			}
		}()
	}

	var lc net.ListenConfig
	ln, err := lc.Listen(startCtx, "tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	cancelStart()

	defer ln.Close() // in case serveHTTP returns before Serve took it over

	// The console follows the changes feed until ctx ends (a signal), which
	// also ends its event streams so that they do not hold the shutdown.
	cons.Start(ctx)
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
		defer cancel()
		if cerr := cons.Stop(stopCtx); cerr != nil {
			err = errors.Join(err, fmt.Errorf("stop console: %w", cerr))
		}
	}()

	if err := mreg.Register(metrics.NewBrokerCollector(broker)); err != nil {
		return err
	}
	status := &statusHandler{store: st, storeDesc: storeDescription(cfg), broker: broker, bus: b, feed: follower, started: time.Now()}
	handler := cons.Mount(withStatus(status, withSmartmob(apps, cfg, logger, withProcessRegistry(srv, procs, cfg, logger, srv.Handler()))))
	handler = withMetrics(mreg.Handler(), handler)
	if cfg.Users != nil {
		handler = cfg.Users.MiddlewareWith(handler, srv.WriteError)
	}
	handler = recoverPanics(logger, handler)
	route := routeOf(srv)
	handler = mreg.Middleware(route, handler)
	handler = requestlog.Middleware(logger, route, handler)
	return serveHTTP(ctx, ln, handler, cfg, logger)
}

// serveHTTP serves handler on ln until ctx is done, then stops accepting
// and waits up to cfg.ShutdownTimeout for in-flight requests; those still
// running then have their context cancelled and their connection closed,
// and the shutdown is reported as an error.
func serveHTTP(ctx context.Context, ln net.Listener, handler http.Handler, cfg config, logger *slog.Logger) (err error) {
	// Requests run under their own base context, not ctx: a signal must let
	// in-flight requests finish, and only an expired shutdown cuts them off.
	baseCtx, cancelRequests := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRequests()
	hs := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		// Actions such as check_neighbors crawl other servers with their own
		// per-peer deadlines; this is the outer bound for any response.
		WriteTimeout:   2 * time.Minute,
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: 1 << 20,
		// net/http answers OPTIONS * itself, before any handler, so
		// without this it would skip authentication; the OCCI server
		// answers it behind --users like any other request.
		DisableGeneralOptionsHandler: true,
		BaseContext:                  func(net.Listener) context.Context { return baseCtx },
		ErrorLog:                     slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}

	addr := ln.Addr().String()
	attrs := []any{"addr", addr, "url", "http://" + addr + "/", "store", storeDescription(cfg)}
	if cfg.PublicURL != "" {
		attrs = append(attrs, "public_url", cfg.PublicURL)
	}
	if cfg.Users != nil {
		attrs = append(attrs, "users", cfg.Users.Len())
	}
	attrs = append(attrs, curveAttrs(cfg.Curve)...)
	logger.Info("listening", attrs...)

	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()

	select {
	case err := <-served:
		// Serve only returns early when the listener fails.
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}

	logger.Info("shutting down", "timeout", cfg.ShutdownTimeout)
	shutCtx, cancelShut := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancelShut()
	if serr := hs.Shutdown(shutCtx); serr != nil {
		err = fmt.Errorf("shutdown: requests still running after %v: %w", cfg.ShutdownTimeout, serr)
		cancelRequests()
		_ = hs.Close()
	}
	if serr := <-served; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, fmt.Errorf("serve: %w", serr))
	}
	return err
}

// registerBuiltinProviders registers the providers cmbsd ships with under
// the names kinds are bound to with PUT /-/ (pyCMBS's put_provider files).
// The CMBS broker reaches members and messages through the server's entity
// service; the registry starts it (binding the layers the record in st
// names) and stops it (closing every socket) at shutdown.
func registerBuiltinProviders(reg *providers.Registry, srv *occi.Server, st store.Store, cfg config, sup *supervisor.Supervisor, events *busEvents, onDelivery func(cmbs.ReceivedMessage), logger *slog.Logger) (*cmbs.Broker, *processreg.Provider, error) {
	opts := cmbs.Options{Logger: logger, AllowNonLoopback: cfg.Insecure, RequestTimeout: cfg.PeerTimeout, ImportLayersFile: cfg.ImportLayersFile, Curve: cfg.Curve,
		Transport: zmqOptions(cfg.ZMQ, logger), OnDelivery: onDelivery, DeliveryMessage: events.publishing}
	popts := processreg.Options{MaxOutput: cfg.MaxOutput, MaxRecordOutput: cfg.MaxRecordOutput, TempDir: cfg.RunDir, Logger: logger, Supervisor: sup}
	if cfg.Bus.EventsOut != "" {
		popts.Events = events // execution.<uuid> on --events-out
	}
	procs := processreg.New(srv.Entities(), popts)
	if err := procs.Register(reg); err != nil {
		return nil, nil, err
	}
	opts.Processes = procs
	// The broker's member list needs no periodic re-read: on CouchDB the
	// changes feed keeps it exact, and the embedded store has no writer but
	// this server, whose member changes the broker sees as they are made.
	opts.MembersMaxAge = membersMaxAgeExact
	if cfg.LayersRecord != "" {
		opts.Layers, opts.LayersID = st, cfg.LayersRecord
	}
	broker := cmbs.NewBroker(srv.Entities(), opts)
	if err := broker.Register(reg); err != nil {
		// Nothing is open yet; Stop only releases the broker's client.
		_ = broker.Stop(context.Background())
		return nil, nil, err
	}
	return broker, procs, nil
}

// withProcessRegistry serves the Process Registry's own API
// (/api/process_definition/) beside the OCCI interface, over the same
// definition entities, and the WebSocket console of running services
// (/process/execution/<id>/console).
func withProcessRegistry(srv *occi.Server, procs *processreg.Provider, cfg config, logger *slog.Logger, next http.Handler) http.Handler {
	console := procs.ConsoleHandler()
	api := processreg.NewFacade(srv.Entities(), processreg.FacadeOptions{PublicURL: cfg.PublicURL, MaxBodyBytes: cfg.MaxBody, Logger: logger})
	// A prefix test rather than http.ServeMux: the mux would clean and
	// redirect paths the OCCI router answers itself.
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, processreg.APIPrefix) {
			w.Header().Set("Server", occi.ServerHeader)
			api.ServeHTTP(w, r)
			return
		}
		if _, ok := processreg.ConsoleExecution(r.URL.Path); ok {
			w.Header().Set("Server", occi.ServerHeader)
			console.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}
