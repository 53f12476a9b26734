package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/cmbs/cmbs/cmbs"
	processreg "github.com/cmbs/cmbs/providers/process"
	"github.com/cmbs/cmbs/store"
	"github.com/cmbs/cmbs/store/couch"
	"github.com/cmbs/cmbs/store/sqlite"
)

// openStore opens the store the configuration selects, every call bounded
// by --store-timeout. For the embedded store it creates the database's
// directory first (./cmbs-data/ by default), so cmbsd runs with nothing
// prepared. ctx is the server's (cancelled by a signal) and startCtx the
// start's, which also ends at the start timeout: a CouchDB that does not
// answer fails the start, while the embedded store's open, which may
// rebuild its index after an upgrade (minutes on a large file, logged),
// runs until it is done or a signal stops it.
func openStore(ctx, startCtx context.Context, cfg config, logger *slog.Logger) (store.Store, error) {
	if cfg.StoreKind != storeSQLite {
		ctx = startCtx
	}
	st, err := openBackend(ctx, cfg, logger)
	if err != nil {
		return nil, err
	}
	return store.WithTimeout(st, cfg.StoreTimeout), nil
}

func openBackend(ctx context.Context, cfg config, logger *slog.Logger) (store.Store, error) {
	switch cfg.StoreKind {
	case storeSQLite:
		if err := os.MkdirAll(filepath.Dir(cfg.SQLitePath), 0o750); err != nil {
			return nil, fmt.Errorf("create store directory: %w", err)
		}
		st, err := sqlite.Open(ctx, cfg.SQLitePath, sqlite.WithLogger(logger), sqlite.WithUnindexed(cmbs.UnindexedPaths...), sqlite.WithUnsearched(processreg.UnindexedPaths...))
		if err != nil {
			return nil, fmt.Errorf("open embedded store %s: %w", cfg.SQLitePath, err)
		}
		return st, nil
	case storeCouch:
		st, err := couch.Open(ctx, cfg.CouchURL, cfg.DB, couch.WithLogger(logger))
		if err != nil {
			// couch names the server (password redacted) and database itself.
			return nil, fmt.Errorf("open CouchDB store: %w", err)
		}
		return st, nil
	default:
		return nil, fmt.Errorf("unknown store kind %d", cfg.StoreKind)
	}
}

// storeDescription names the store for logs, without credentials.
func storeDescription(cfg config) string {
	if cfg.StoreKind == storeCouch {
		return redact(cfg.CouchURL) + " db=" + cfg.DB
	}
	return "sqlite:" + cfg.SQLitePath
}
