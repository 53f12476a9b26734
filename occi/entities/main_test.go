package entities_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/cmbs/cmbs/internal/couchpeer"
	"github.com/cmbs/cmbs/internal/testserver"
)

// TestMain starts one CouchDB-API test peer for the binary when the tests
// run on CouchDB (CMBS_TEST_STORE=couchdb), rather than one per test.
func TestMain(m *testing.M) {
	if os.Getenv(testserver.EnvStore) != "couchdb" {
		os.Exit(m.Run())
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	couch := couchpeer.StartServer(ctx)
	cancel()
	code := m.Run()
	if err := couch.Close(); err != nil {
		fmt.Fprintln(os.Stderr, "stopping the CouchDB-API test peer:", err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}
