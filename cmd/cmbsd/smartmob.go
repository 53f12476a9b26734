package main

import (
	"context"
	"log/slog"
	"net/http"
	"strings"

	"github.com/cmbs/cmbs/occi"
	"github.com/cmbs/cmbs/providers"
	"github.com/cmbs/cmbs/providers/process/supervisor"
	"github.com/cmbs/cmbs/providers/smartmob"
)

// newSupervisor is the one supervisor of the server: the Process
// Registry's service definitions and the smartmob processes run on it.
func newSupervisor(logger *slog.Logger) *supervisor.Supervisor {
	return supervisor.New(supervisor.Options{Logger: logger})
}

// closeSupervisor stops whatever still runs on sup (the providers stopped
// their own processes already) within the shutdown timeout.
func closeSupervisor(ctx context.Context, sup *supervisor.Supervisor, cfg config) error {
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancel()
	return sup.Close(stopCtx)
}

// registerSmartmob registers the smartmob provider: processes on sup,
// their directories under --run-dir, their console lines and state changes
// published on --events-out as smartmob.<slug>.
func registerSmartmob(reg *providers.Registry, srv *occi.Server, sup *supervisor.Supervisor, cfg config, events *busEvents, logger *slog.Logger) (*smartmob.Provider, error) {
	p := smartmob.New(srv.Entities(), smartmob.Options{Supervisor: sup, RunDir: cfg.RunDir, Events: events, Logger: logger})
	return p, p.Register(reg)
}

// withSmartmob serves smartmob-agent's API (/smartmob-agent/) and the
// WebSocket consoles of smartmob processes (/smartmob/process/<id>/console)
// beside the OCCI interface.
func withSmartmob(p *smartmob.Provider, cfg config, logger *slog.Logger, next http.Handler) http.Handler {
	agent := smartmob.NewAgent(p, smartmob.AgentOptions{PublicURL: cfg.PublicURL, MaxBodyBytes: cfg.MaxBody, Logger: logger})
	console := p.ConsoleHandler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, smartmob.AgentPrefix) {
			w.Header().Set("Server", occi.ServerHeader)
			agent.ServeHTTP(w, r)
			return
		}
		if _, ok := smartmob.ConsoleProcess(r.URL.Path); ok {
			w.Header().Set("Server", occi.ServerHeader)
			console.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}
