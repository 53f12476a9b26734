// Package cmbs is the CMBS message broker: the providers of pyCMBS's
// member kind ("cmbs_member") and message kind ("cmbs_message"), which
// move messages between neighbouring cmbsd servers over ZeroMQ on the
// layers L1–L4, through package transport.
//
// # Wiring
//
// main builds one Broker over the OCCI entity service and registers its
// two providers; the kinds are bound to them with pyCMBS's put_provider
// files (testdata/pycmbs, testdata/readme):
//
//	b := cmbs.NewBroker(srv.Entities(), cmbs.Options{Logger: logger})
//	err := b.Register(reg) // "cmbs_member" and "cmbs_message"
//
// The broker reads and writes members and messages through the entity
// service (in-process; pyCMBS polled its own HTTP API), so they are
// validated like any client's. It finds the kinds by id
// (http://houssem.org/cmbs#member, …#message) and their collections
// through the category registry. Both providers implement providers.Stopper:
// Stop closes every socket, cancels every call and forward in flight and
// returns when every goroutine the broker started has returned.
//
// # Members
//
// A member is local (hosted here) when its cmbs.member.local is "true"
// in any case, or when it has none (the README's kind declares no such
// attribute) and its id is not of the RemoteMemberID form
// "<id>~<12 hex digits>"; any number of members may be local, each with
// its own sockets.
//
//   - start_l1, start_l2, start_l31 (start_l3.1), start_l32 (start_l3.2),
//     start_l4 bind that layer's socket: cmbs.member.lN_socket, with
//     l31_socket/l3.1_socket and l32_socket/l3.2_socket both read. The
//     attribute is both the bind address and the address peers are told,
//     so it must be tcp://host:port with a real host and port. Starting a
//     started layer is a no-op. Errors: a remote member → 409; no socket
//     attribute, or one that cannot be bound as given → 400 naming the
//     attribute; address in use → 409 with the bind error; any other
//     bind failure → 500 with its text.
//   - stop_lN closes the socket at once: connections are dropped, so a
//     peer waiting on it gets an error or its own timeout, never a hang.
//     A later start_lN binds the same port again.
//   - Result of both: {"member":"/cmbs/member/<id>","layer":"l1",
//     "socket":"tcp://…","running":true,"changed":true} (changed is false
//     for a no-op).
//   - Changing a started layer's socket, or marking a member with started
//     layers remote, is refused (409). Deleting a local member closes its
//     sockets. With Options.Layers (cmbsd: its store) the running layers
//     are recorded in one document of the store that holds the members
//     (Options.LayersID, cmbsd --layers-record, default "cmbs-layers")
//     after every start, stop and deletion, and bound again when cmbsd
//     starts; one that cannot be (its port taken, its member gone) is
//     logged and dropped from the record. A layers.json of earlier
//     versions (Options.ImportLayersFile) is imported once.
//
// Remote members are members learned from other servers, stored at
// RemoteMemberID(their id, their L1 socket) = "<their id>~<12 hex
// digits>": deterministic, so learning a member again updates it, and
// distinct for two servers that use the same member id (pyCMBS's example
// id). That id marks them remote; where the member kind declares
// cmbs.member.local (pyCMBS's does) they are also stored with local
// "false", and where it does not (the README's) they have no local
// attribute. Attributes of a learned member are kept as this server's
// member kind declares them (l31_socket ⇄ l3.1_socket translated,
// undeclared ones dropped).
//
// A member is named across servers (in path_history and execution
// records) by its member reference: its L1 socket followed by its location
// on its own server, "tcp://127.0.0.1:5010/cmbs/member/<id>". The socket
// makes it unique even when ids collide; a provider cannot know the HTTP
// URL its server is reached at, which is what pyCMBS used.
//
// # Discovery: check_neighbors
//
// check_neighbors crawls breadth-first from the member's neighbors_socket
// (L1 sockets), probing each socket once (this server's own members' are
// skipped) with an L1 message whose message_content is the crawling
// member's description. The reply names the member there, stored here as
// remote, and the L1 sockets it knows, probed next: members are learned
// transitively. The receiving side stores the asker. Each probe is stored
// here as an l1 message whose result is the reply (as pyCMBS did; only
// answered probes are kept), at ProbeID(crawling member, socket), so a
// later crawl replaces it instead of adding another; on the receiver it
// is neither stored nor executed. Sockets of one BFS level are
// probed concurrently. Each probe is bounded by Options.RequestTimeout,
// the crawl by Options.DiscoveryTimeout and Options.MaxDiscovered; the
// action answers 200 with
//
//	{"member":"/cmbs/member/a",
//	 "learned":[{"socket":"tcp://…","id":"b","member":"/cmbs/member/b~…","message":"/cmbs/message/<probe>","sockets_l1":[…]}],
//	 "failed":[{"socket":"tcp://…","error":"… peer did not answer …"}]}
//
// where failed lists dead, slow and misbehaving peers and sockets left
// unprobed when a bound was hit.
//
// # Wire
//
// Every message is a transport envelope [routing…, "", id, mimetype, body]
// with mimetype application/occi+json and the message entity's pyOCNI JSON
// description as body ({"kind","mixins","attributes":{"cmbs":{"message":
// {…}}},"id","title","summary","actions","links"}); the id frame is the
// message id. Layer sockets answer with mimetype application/json, or with
// an error envelope (transport.ErrorMimeType, code CodeBadMessage) to an
// envelope that is not a CMBS message — and keep serving. A plain libzmq
// REQ socket can talk to any layer socket with the frames [id, mimetype,
// body].
//
// # Sending: send_l1 … send_l4
//
// The action's layer must match the message's cmbs_layer when it has one
// ("l3.1" and "l31" are the same layer), else 400. A message with sendable
// false is not sent on L1–L3.2 (409); on L4 it goes to the sender's
// neighbours, which do not forward it. The sending member is the local
// member the action's "member" attribute names
// ({"attributes":{"member":"<id>"}}), else the server's only local member;
// with several and none named the action answers 400. The sender's
// reference is appended to path_history (once), on the wire and, with the
// result, in the stored message. That write happens once the action has
// its answer (entities.Service.UpdateLater): the action returns without
// waiting for the store, and anyone reading the message through the server
// afterwards waits for the write, so the result is always there to read.
//
// The broker keeps the list of known members between messages instead of
// reading it from the store for every send and every receipt. Changes made
// through this server (the API, check_neighbors, deletes) take effect for
// the next message; changes another cmbsd made in a shared CouchDB are seen
// within Options.MembersMaxAge.
//
//   - L1: point-to-point request/reply to l1_socket_receiver_member (400
//     when absent). An empty message_content is replaced by the sender's
//     description (local "false"), which introduces the sender to the
//     receiver. The reply, {"member_description": <the receiving member,
//     local "false">, "sockets_l1": [<L1 socket of every member the
//     receiver knows, itself and the asker included, and the receiving
//     member's neighbors_socket entries>]} plus "executed":
//     <execution record> when the message was executable there, is written
//     to the message's result and returned as the action's result. No
//     answer within RequestTimeout → 504; an error answer → 502.
//   - L2: broadcast to every remote member with an L2 socket, each socket
//     once. Delivery is acknowledged (a request per member over
//     DEALER/ROUTER), so none is lost to ZeroMQ's slow joiner.
//   - L3.1: to the members that the message's providers name, on their
//     L3.1 socket. A name is a member id (a remote member's own id or its
//     RemoteMemberID), a location or URL, a layer socket, or a member
//     reference. A name matching no member, or a member without an L3.1
//     socket, is a failed delivery. No providers → 400.
//   - L3.2: to every member but the sender whose topics intersect the
//     message's topics, on its L3.2 socket, each member once however many
//     topics match. Local members count too. No topics → 400.
//   - L4: routed over neighbours. A member's neighbours are its
//     neighbors_socket entries (L1 sockets) resolved to the members known
//     here with that L1 socket, on their L4 socket: L4 needs
//     check_neighbors first, and an unresolved neighbour is a failed
//     delivery. The sender delivers to its neighbours not already on
//     path_history. A receiver drops a message it has seen (ids remembered
//     per member, Options.SeenIDs) or whose path_history names it, appends
//     itself to path_history, delivers it locally when it is a destination,
//     and, unless sendable is false or the message has travelled
//     Options.MaxHops hops (default 8), forwards it to its own neighbours
//     not on the path, in the background (acknowledged, RequestTimeout per
//     neighbour). The destination rule: if the message names providers,
//     the member must be named; if the message has topics, the member must
//     share one; a message with neither reaches every member on its way.
//
// The result of send_l2, send_l31, send_l32 and send_l4, also written to
// the message's result:
//
//	{"message":"/cmbs/message/<id>","layer":"l2","sender":"/cmbs/member/a",
//	 "deliveries":[{"provider":"b","neighbor":"tcp://…","member":"/cmbs/member/b~…","socket":"tcp://…",
//	                "delivered":true,"ack":<Receipt>} | {…,"delivered":false,"error":"…"}],
//	 "delivered":1,"failed":0}
//
// (provider only on L3.1, neighbor only on L4). A local member whose layer
// is not started is reported as such without a network call.
//
// # Receiving
//
// On every layer, a received message is handled by the receiving member:
// storable → stored as a message entity under its own id (unregistered
// mixins, links and actions are not taken from the wire); a message whose
// id is already stored is a repeat and is neither stored nor executed
// again. executable → its execution is recorded: for now (process
// execution comes with the execution providers) that is the record
// {"executed_by": <member reference>, "at": <RFC 3339 time>, "layer": "l2"}
// written to the stored copy's result and returned in the receipt. An L1
// request additionally stores the asker when its message_content is a
// member description. Flags read true/false in any case (pyCMBS wrote
// "True") or JSON booleans; an absent flag takes the message kind's
// default, else true. Layers other than L1 answer with a Receipt:
//
//	{"member":"tcp://…/cmbs/member/b","layer":"l4","stored":"/cmbs/message/<id>",
//	 "duplicate":true,"executed":{…},"errors":["not stored: …"],
//	 "matched":true,"forwarding_to":["tcp://…"],"not_forwarded":"sendable is false"}
//
// (fields present when they apply; matched, forwarding_to and
// not_forwarded on L4 only). A message on L2, L3.1 or L3.2 that is neither
// storable nor executable (both flags given and false) gets just
// {"member":…,"layer":…}; its receiver answers it without decoding it
// into a map (plain.go), and an Options.OnDelivery hook is told its id
// only when Options.DeliveryMessage says that is enough.
//
// The execute action on a message records the same way, on this server
// (409 when executable is false).
//
// # Limits
//
// Every call to another member has a deadline (Options.RequestTimeout,
// cmbsd --peer-timeout); an incoming message's handling is bounded by
// Options.HandlerTimeout.
// There is no authentication between members: any ZeroMQ peer can
// introduce members and deliver messages (as in pyCMBS).
package cmbs
