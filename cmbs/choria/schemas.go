package choria

import (
	"bytes"
	"embed"
	"fmt"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// Protocols, as named in the messages' protocol field and the schemas' titles.
const (
	ProtocolRPCRequest        = "io.choria.mcorpc.external.v1.rpc_request"
	ProtocolRPCReply          = "io.choria.mcorpc.external.v1.rpc_reply"
	ProtocolActivationRequest = "io.choria.mcorpc.external.v1.activation_request"
	ProtocolActivationReply   = "io.choria.mcorpc.external.v1.activation_reply"
	ProtocolDiscoveryRequest  = "io.choria.choria.discovery.v1.external_request"
	ProtocolDiscoveryReply    = "io.choria.choria.discovery.v1.external_reply"
)

// The schemas are choria-io/schemas' published definitions, with
// rpc_reply.json's trailing comma and copied id fixed; they are both test
// fixtures and what the server validates with.
//
//go:embed testdata/schemas/*.json
var schemaFiles embed.FS

var schemaFile = map[string]string{
	ProtocolRPCRequest:        "rpc_request.json",
	ProtocolRPCReply:          "rpc_reply.json",
	ProtocolActivationRequest: "activation_request.json",
	ProtocolActivationReply:   "activation_reply.json",
	ProtocolDiscoveryRequest:  "external_request.json",
	ProtocolDiscoveryReply:    "external_reply.json",
}

// Schemas validates documents against the Choria schemas. The zero value
// is not usable; NewSchemas compiles them.
type Schemas struct {
	byProtocol map[string]*jsonschema.Schema
}

var compileOnce = sync.OnceValues(compileSchemas)

// NewSchemas returns the compiled schemas (compiled once per process: they
// are constant data).
func NewSchemas() (*Schemas, error) { return compileOnce() }

func compileSchemas() (*Schemas, error) {
	s := &Schemas{byProtocol: map[string]*jsonschema.Schema{}}
	for proto, file := range schemaFile {
		raw, err := schemaFiles.ReadFile("testdata/schemas/" + file)
		if err != nil {
			return nil, err
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
		if err != nil {
			return nil, fmt.Errorf("schema %s: %w", file, err)
		}
		c := jsonschema.NewCompiler()
		if err := c.AddResource(file, doc); err != nil {
			return nil, fmt.Errorf("schema %s: %w", file, err)
		}
		sch, err := c.Compile(file)
		if err != nil {
			return nil, fmt.Errorf("schema %s: %w", file, err)
		}
		s.byProtocol[proto] = sch
	}
	return s, nil
}

// Validate checks a JSON document against protocol's schema. doc is the
// raw JSON.
func (s *Schemas) Validate(protocol string, doc []byte) error {
	sch := s.byProtocol[protocol]
	if sch == nil {
		return fmt.Errorf("unsupported message protocol %s", protocol)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	if err := sch.Validate(inst); err != nil {
		return schemaError(err)
	}
	return nil
}

// schemaError flattens the validator's error tree into one line.
func schemaError(err error) error {
	ve, ok := err.(*jsonschema.ValidationError)
	if !ok {
		return err
	}
	p := message.NewPrinter(language.English)
	var leaves []string
	var walk func(e *jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) == 0 {
			loc := "/"
			if len(e.InstanceLocation) > 0 {
				loc = ""
				for _, p := range e.InstanceLocation {
					loc += "/" + p
				}
			}
			leaves = append(leaves, fmt.Sprintf("at %s: %s", loc, e.ErrorKind.LocalizedString(p)))
			return
		}
		for _, c := range e.Causes {
			walk(c)
		}
	}
	walk(ve)
	msg := ""
	for i, l := range leaves {
		if i > 0 {
			msg += "; "
		}
		msg += l
	}
	return fmt.Errorf("%s", msg)
}
