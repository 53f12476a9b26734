package entities_test

import (
	"os"
	"testing"

	"github.com/cmbs/cmbs/internal/couchpeer"
	"github.com/cmbs/cmbs/internal/testserver"
)

// TestMain starts one CouchDB-API test peer for the binary when the tests
// run on CouchDB (CMBS_TEST_STORE=couchdb), rather than one per test.
func TestMain(m *testing.M) {
	if os.Getenv(testserver.EnvStore) != "couchdb" {
		os.Exit(m.Run())
	}
	os.Exit(couchpeer.Run(m, nil))
}
