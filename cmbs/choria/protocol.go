package choria

import (
	"encoding/json"
	"fmt"
)

// Status codes of an rpc reply (MCollective SimpleRPC's).
const (
	StatusOK           = 0
	StatusAborted      = 1
	StatusUnknown      = 2 // unknown agent or action
	StatusMissingData  = 3
	StatusInvalidData  = 4
	StatusUnknownError = 5
)

// Request is an io.choria.mcorpc.external.v1.rpc_request.
type Request struct {
	Schema     string         `json:"$schema"`
	Protocol   string         `json:"protocol"`
	Agent      string         `json:"agent"`
	Action     string         `json:"action"`
	RequestID  string         `json:"requestid"`
	SenderID   string         `json:"senderid"`
	CallerID   string         `json:"callerid"`
	Collective string         `json:"collective"`
	TTL        int64          `json:"ttl"`
	MsgTime    int64          `json:"msgtime"`
	Data       map[string]any `json:"data"`
}

// RequestSchemaURL is the $schema the server puts in requests it builds.
const RequestSchemaURL = "https://choria.io/schemas/mcorpc/external/v1/rpc_request.json"

// Reply is an io.choria.mcorpc.external.v1.rpc_reply.
type Reply struct {
	StatusCode int            `json:"statuscode"`
	StatusMsg  string         `json:"statusmsg"`
	Data       map[string]any `json:"data"`
}

// OK returns a successful reply carrying data (never nil in the JSON).
func OK(data map[string]any) Reply {
	if data == nil {
		data = map[string]any{}
	}
	return Reply{StatusCode: StatusOK, StatusMsg: "OK", Data: data}
}

// Fail returns a failed reply with code and a message.
func Fail(code int, format string, args ...any) Reply {
	return Reply{StatusCode: code, StatusMsg: fmt.Sprintf(format, args...), Data: map[string]any{}}
}

// MarshalJSON writes data as {} when it is nil, as the schema requires.
func (r Reply) MarshalJSON() ([]byte, error) {
	type plain Reply
	if r.Data == nil {
		r.Data = map[string]any{}
	}
	return json.Marshal(plain(r))
}

// ActivationRequest is an io.choria.mcorpc.external.v1.activation_request.
type ActivationRequest struct {
	Schema   string `json:"$schema"`
	Protocol string `json:"protocol"`
	Agent    string `json:"agent"`
}

// ActivationSchemaURL is the $schema of activation requests the server builds.
const ActivationSchemaURL = "https://choria.io/schemas/mcorpc/external/v1/activation_request.json"

// ActivationReply is an io.choria.mcorpc.external.v1.activation_reply.
type ActivationReply struct {
	Activate bool `json:"activate"`
}
