package process_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/cmbs/cmbs/categories"
	"github.com/cmbs/cmbs/internal/testserver"
	"github.com/cmbs/cmbs/occi"
	"github.com/cmbs/cmbs/occi/model"
	"github.com/cmbs/cmbs/providers"
	"github.com/cmbs/cmbs/providers/process"
)

// A quick run's record comes in through CreateLaterTrusted, which skips
// checking each value: fed through the validated path (Create, as a
// client's entity is), the same record is accepted and stored as the very
// same document, for every shape a record takes (text and binary output,
// stderr, a failure, a run that could not start, a record cut short).
func TestRecordMatchesValidated(t *testing.T) {
	var prov *process.Provider
	srv := testserver.Start(t, testserver.Options{
		Register: func(reg *providers.Registry, srv *occi.Server) error {
			prov = process.New(srv.Entities(), process.Options{MaxRecordOutput: 8, KillGrace: 500 * time.Millisecond})
			return prov.Register(reg)
		},
	})
	ents := srv.OCCI.Entities()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	kind, ok := ents.Categories().Get(categories.ProcessExecutionKind)
	if !ok {
		t.Fatal("no execution kind")
	}
	for name, def := range map[string]string{
		"true":      `{"exec":"/bin/true"}`,
		"echo":      `{"exec":"echo","argv":["hi"],"output_adapter":{"output_type":"file","output_parameters":{"file_type":"stream","stream_name":"STDOUT"}}}`,
		"binary":    `{"exec":"sh","argv":["-c","printf '\\377\\376'; echo oops >&2; exit 3"]}`,
		"missing":   `{"exec":"definitely-not-a-binary"}`,
		"truncated": `{"exec":"sh","argv":["-c","echo 0123456789abcdef; echo 0123456789abcdef >&2"]}`,
		"input":     `{"exec":"/usr/bin/tr","argv":["-d","x"],"input_adapter":{"input_type":"file","input_parameters":{"file_type":"stream","stream_name":"STDIN"}}}`,
	} {
		t.Run(name, func(t *testing.T) {
			status, body := testserver.Request(t, 30*time.Second, "POST", srv.URL+"/process/definition/",
				[]byte(`{"kind":"http://cmbs.dev/occi/process#definition","attributes":{"process":{"definition":`+def+`}}}`))
			if status != http.StatusCreated {
				t.Fatalf("create definition: %d %s", status, body)
			}
			var created struct{ Location []string }
			if err := json.Unmarshal(body, &created); err != nil || len(created.Location) != 1 {
				t.Fatalf("create definition: %s", body)
			}
			defLoc, err := model.PathOf(created.Location[0])
			if err != nil {
				t.Fatal(err)
			}
			d, err := ents.Get(ctx, defLoc)
			if err != nil {
				t.Fatal(err)
			}
			res, err := prov.Execute(ctx, d, []byte("xaxbx"), 0, "test")
			if err != nil {
				t.Fatal(err)
			}
			trusted, err := ents.Get(ctx, res["execution"].(string))
			if err != nil {
				t.Fatal(err)
			}
			record := subMap(subMap(trusted.Attributes, "process"), "execution")
			if len(record) == 0 {
				t.Fatalf("no record in %v", trusted.Attributes)
			}
			// The same record through the validated path, from a copy (the
			// validated path nests and fills in place).
			var copied map[string]any
			b, _ := json.Marshal(record)
			if err := json.Unmarshal(b, &copied); err != nil {
				t.Fatal(err)
			}
			in := &model.EntityInput{Entity: model.Entity{Kind: kind.ID(), Attributes: map[string]any{"process": map[string]any{"execution": copied}}},
				Present: map[string]bool{"kind": true, "attributes": true}}
			locs, err := ents.Create(process.InternalContext(ctx), kind, model.TypeResource, []*model.EntityInput{in})
			if err != nil {
				t.Fatalf("the validated path refuses the record %v: %v", record, err)
			}
			validated, err := ents.Get(ctx, locs[0])
			if err != nil {
				t.Fatal(err)
			}
			if got, want := document(t, trusted), document(t, validated); !bytes.Equal(got, want) {
				t.Errorf("trusted record\n%s\nvalidated\n%s", got, want)
			}
		})
	}
}

// document is an entity as stored, without what differs between two
// entities of the same content (id, location, revision).
func document(t *testing.T, e *model.Entity) []byte {
	t.Helper()
	c := *e
	c.ID, c.Location, c.Rev = "", "", ""
	b, err := json.Marshal(&c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func subMap(m map[string]any, key string) map[string]any {
	s, _ := m[key].(map[string]any)
	return s
}
