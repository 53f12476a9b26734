// Package cmbs implements the CMBS providers: the "cmbs_member" kind, whose
// local members open ZeroMQ sockets for the layers L1–L4, and the
// "cmbs_message" kind, whose send_* actions move messages between
// neighbouring cmbsd servers on those layers.
//
// The providers are registered by main under their pyCMBS names and bound to
// the kinds with the seed's put_provider files.
package cmbs
