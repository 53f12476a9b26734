package cmbs

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/cmbs/cmbs/occi/model"
)

// Category identifiers of the CMBS kinds and the message layer mixins, as
// pyCMBS's category files register them.
const (
	MemberKindID  = "http://houssem.org/cmbs#member"
	MessageKindID = "http://houssem.org/cmbs#message"
	// mixinScheme + layer ("l1", "l2", "l31", "l32", "l4") is a layer mixin.
	mixinScheme = "http://houssem.org/cmbs#"
)

// Wire mimetypes.
const (
	// MessageMimeType marks a CMBS message: the body is the message entity's
	// pyOCNI JSON description.
	MessageMimeType = "application/occi+json"
	// ReplyMimeType marks a layer's answer (the L1 reply, acknowledgements).
	ReplyMimeType = "application/json"
)

// CodeBadMessage is the error-envelope code a layer socket answers with when
// an envelope's body is not a CMBS message.
const CodeBadMessage = "bad_message"

// Layer is a CMBS layer.
type Layer string

// The layers. Their names are the cmbs_layer values and the suffixes of the
// start_/stop_/send_ action terms.
const (
	L1  Layer = "l1"
	L2  Layer = "l2"
	L31 Layer = "l31"
	L32 Layer = "l32"
	L4  Layer = "l4"
)

// Layers lists every layer, lowest first.
func Layers() []Layer { return []Layer{L1, L2, L31, L32, L4} }

// ParseLayer reads a layer name in either spelling ("l31" or "l3.1"),
// case-insensitively.
func ParseLayer(s string) (Layer, bool) {
	switch strings.ToLower(strings.ReplaceAll(s, ".", "")) {
	case "l1":
		return L1, true
	case "l2":
		return L2, true
	case "l31":
		return L31, true
	case "l32":
		return L32, true
	case "l4":
		return L4, true
	}
	return "", false
}

// socketAttrs are the member attribute names that hold the layer's socket:
// pyCMBS's category file spells them l31_socket/l32_socket, its README
// l3.1_socket/l3.2_socket.
func (l Layer) socketAttrs() []string {
	switch l {
	case L31:
		return []string{"l31_socket", "l3.1_socket"}
	case L32:
		return []string{"l32_socket", "l3.2_socket"}
	}
	return []string{string(l) + "_socket"}
}

// socketAttrName names the layer's socket attribute for messages.
func (l Layer) socketAttrName() string {
	names := l.socketAttrs()
	if len(names) == 1 {
		return "cmbs.member." + names[0]
	}
	return "cmbs.member." + names[0] + " (or cmbs.member." + names[1] + ")"
}

// mixinID is the message mixin of the layer.
func (l Layer) mixinID() string { return mixinScheme + string(l) }

// The attribute namespaces of the CMBS kinds.
var (
	memberNamespace  = []string{"cmbs", "member"}
	messageNamespace = []string{"cmbs", "message"}
)

// memberAttrs is attrs' cmbs.member object, or nil.
func memberAttrs(attrs map[string]any) map[string]any {
	v, _ := model.Lookup(attrs, memberNamespace)
	m, _ := v.(map[string]any)
	return m
}

// messageAttrs is attrs' cmbs.message object, or nil.
func messageAttrs(attrs map[string]any) map[string]any {
	v, _ := model.Lookup(attrs, messageNamespace)
	m, _ := v.(map[string]any)
	return m
}

// ensureMessageAttrs returns attrs["cmbs"]["message"], creating it.
func ensureMessageAttrs(attrs map[string]any) map[string]any {
	if m := messageAttrs(attrs); m != nil {
		return m
	}
	m := map[string]any{}
	model.SetPath(attrs, []string{"cmbs", "message"}, m)
	return m
}

// str reads a string attribute ("" when absent or not a string).
func str(attrs map[string]any, name string) string {
	s, _ := attrs[name].(string)
	return strings.TrimSpace(s)
}

// strList reads an Array attribute of strings. pyCMBS writes "" for an
// empty list; a lone string counts as a list of one.
func strList(attrs map[string]any, name string) []string {
	var out []string
	switch v := attrs[name].(type) {
	case string:
		if s := strings.TrimSpace(v); s != "" {
			out = append(out, s)
		}
	case []any:
		for _, e := range v {
			if s, ok := e.(string); ok && strings.TrimSpace(s) != "" {
				out = append(out, strings.TrimSpace(s))
			}
		}
	}
	return out
}

// layerSocket returns a member's socket for the layer and the attribute it
// came from, trying both spellings.
func layerSocket(member map[string]any, l Layer) (socket, attr string) {
	for _, name := range l.socketAttrs() {
		if s := str(member, name); s != "" {
			return s, name
		}
	}
	return "", ""
}

// isLocal reports whether a member is hosted here. Its local attribute
// decides where it is set (true or false, in any case); without one (the
// README's member kind declares none) a member is remote when its id has
// the form discovery stores remote members under (RemoteMemberID:
// "<id>~" and 12 hex digits), and local otherwise.
func isLocal(e *model.Entity) bool {
	v, present := memberAttrs(e.Attributes)["local"]
	if !present || v == nil {
		return !isRemoteID(e.ID)
	}
	b, err := parseFlag(v)
	return err == nil && b
}

// isRemoteID reports whether id has the form of RemoteMemberID: something,
// remoteIDSep, and remoteIDHex lower-case hex digits.
func isRemoteID(id string) bool {
	i := strings.LastIndex(id, remoteIDSep)
	if i <= 0 || len(id)-i-len(remoteIDSep) != remoteIDHex {
		return false
	}
	for _, c := range id[i+len(remoteIDSep):] {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// parseFlag reads a CMBS flag: true/false in any case (pyCMBS wrote
// "True"), or a JSON boolean.
func parseFlag(v any) (bool, error) {
	switch t := v.(type) {
	case bool:
		return t, nil
	case string:
		switch strings.ToLower(strings.TrimSpace(t)) {
		case "true":
			return true, nil
		case "false":
			return false, nil
		}
	}
	return false, fmt.Errorf("want true or false, got %v", v)
}

// topicsIntersect reports whether two topic lists share a topic. The
// short lists of a message and a member are compared without a set.
func topicsIntersect(a, b []string) bool {
	if len(a)*len(b) <= 64 {
		for _, t := range a {
			if slices.Contains(b, t) {
				return true
			}
		}
		return false
	}
	set := make(map[string]bool, len(a))
	for _, t := range a {
		set[t] = true
	}
	for _, t := range b {
		if set[t] {
			return true
		}
	}
	return false
}

// remoteIDSep separates a remote member's own id from the suffix that makes
// it unique here.
const remoteIDSep = "~"

// remoteIDHex is the number of hex digits after remoteIDSep.
const remoteIDHex = 12

// RemoteMemberID is the id a member learned from a peer is stored under:
// the peer's own id, "~", and 12 hex digits of SHA-256 over the id and its
// L1 socket. It is deterministic (learning the peer again updates the same
// entity) and differs for two peers that share an id (pyCMBS's example id)
// but not an L1 socket; the peer's own id stays readable in front. An id
// that could not be part of a location (or is over 128 bytes) is replaced by
// "member".
func RemoteMemberID(peerID, l1Socket string) string {
	sum := sha256.Sum256([]byte(peerID + "\x00" + l1Socket))
	suffix := hex.EncodeToString(sum[:remoteIDHex/2])
	if !plainID(peerID) {
		return "member" + remoteIDSep + suffix
	}
	return peerID + remoteIDSep + suffix
}

// peerID returns the member's own id on its own server: for a member stored
// by discovery, the part of its id before the RemoteMemberID suffix.
func peerID(e *model.Entity) string {
	l1, _ := layerSocket(memberAttrs(e.Attributes), L1)
	if i := strings.LastIndex(e.ID, remoteIDSep); i > 0 && RemoteMemberID(e.ID[:i], l1) == e.ID {
		return e.ID[:i]
	}
	return e.ID
}

func plainID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for _, c := range id {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return id != "." && id != ".."
}

// memberRef names a member across servers, in path_history and in
// execution records: its L1 socket followed by its location on its own
// server, e.g. "tcp://127.0.0.1:5010/cmbs/member/016ad860-…". The socket
// makes it unique even when two servers use the same member id; a provider
// cannot know the HTTP URL clients reach its server at (pyCMBS used that).
func memberRef(e *model.Entity) string {
	l1, _ := layerSocket(memberAttrs(e.Attributes), L1)
	loc := e.Location
	if !isLocal(e) {
		// A learned member: name it as its own server does.
		loc = loc[:strings.LastIndex(loc, "/")+1] + peerID(e)
	}
	return l1 + loc
}

// refMatches reports whether a path_history entry names the member: the
// same L1 socket and the same own id. Entries that are plain locations or
// URLs (pyCMBS wrote HTTP URLs) match by id only when the member has no L1
// socket.
func refMatches(ref string, e *model.Entity) bool {
	socket, id := splitRef(ref)
	l1, _ := layerSocket(memberAttrs(e.Attributes), L1)
	return socket == l1 && id != "" && id == peerID(e)
}

// splitRef splits a member reference into its L1 socket (empty when it does
// not start with tcp://) and the last segment of its location.
func splitRef(ref string) (socket, id string) {
	rest := ref
	if strings.HasPrefix(ref, "tcp://") {
		if i := strings.Index(ref[len("tcp://"):], "/"); i >= 0 {
			socket, rest = ref[:len("tcp://")+i], ref[len("tcp://")+i:]
		} else {
			return ref, ""
		}
	}
	rest = strings.TrimSuffix(rest, "/")
	return socket, rest[strings.LastIndex(rest, "/")+1:]
}

// describe renders an entity as its pyOCNI JSON description, the form
// members and messages travel in. Attributes are deep-copied.
func describe(e *model.Entity) map[string]any {
	attrs, _ := model.DeepCopy(e.Attributes).(map[string]any)
	if attrs == nil {
		attrs = map[string]any{}
	}
	return description(e, attrs)
}

// description is e's description with the attributes given.
func description(e *model.Entity, attrs map[string]any) map[string]any {
	d := map[string]any{
		"kind":       e.Kind,
		"mixins":     append([]string{}, e.Mixins...),
		"attributes": attrs,
		"actions":    []any{},
		"id":         e.ID,
		"links":      []any{},
	}
	if e.HasTitle || e.Title != "" {
		d["title"] = e.Title
	}
	if e.HasSummary || e.Summary != "" {
		d["summary"] = e.Summary
	}
	return d
}

// describeMessage is describe for a message about to be sent: only the
// objects on the way to its cmbs.message attributes are copied, which
// send changes (layer, path, result); the values in them are shared with
// e and must not be modified.
func describeMessage(e *model.Entity) map[string]any {
	attrs := maps.Clone(e.Attributes)
	if attrs == nil {
		attrs = map[string]any{}
	}
	if c, ok := attrs["cmbs"].(map[string]any); ok {
		c = maps.Clone(c)
		if m, ok := c["message"].(map[string]any); ok {
			c["message"] = maps.Clone(m)
		}
		attrs["cmbs"] = c
	}
	return description(e, attrs)
}

// describeMember is the description a member is known by on other servers:
// with local "false", so that whoever stores it stores it as remote.
func describeMember(e *model.Entity) map[string]any {
	d := describe(e)
	attrs := d["attributes"].(map[string]any)
	if memberAttrs(attrs) == nil {
		model.SetPath(attrs, []string{"cmbs", "member"}, map[string]any{})
	}
	memberAttrs(attrs)["local"] = "false"
	return d
}
