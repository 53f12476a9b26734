package occi_test

import (
	"os"
	"testing"

	"github.com/cmbs/cmbs/internal/couchpeer"
	"github.com/cmbs/cmbs/internal/testserver"
	"github.com/cmbs/cmbs/store"
)

// couchServer is this test binary's CouchDB (the peer, or COUCHDB_URL).
var couchServer *couchpeer.Server

func TestMain(m *testing.M) { os.Exit(couchpeer.Run(m, &couchServer)) }

// stores lists the stores end-to-end tests run against: the embedded one,
// and a fresh CouchDB database (skipped when no CouchDB is available,
// unless CI=true).
var stores = []struct {
	name string
	open func(t *testing.T) store.Store
}{
	{"sqlite", func(t *testing.T) store.Store { return testserver.OpenSQLite(t) }},
	{"couchdb", func(t *testing.T) store.Store { return testserver.OpenCouch(t, couchServer.URL(t)) }},
}

// eachStore runs fn once per store, as subtests; only on the store
// CMBS_TEST_STORE names when it is set (the second pass of the test
// script), since the first pass ran both.
func eachStore(t *testing.T, fn func(t *testing.T, open func(t *testing.T) store.Store)) {
	only := os.Getenv(testserver.EnvStore)
	for _, s := range stores {
		if only != "" && s.name != only {
			continue
		}
		t.Run(s.name, func(t *testing.T) { fn(t, s.open) })
	}
}
