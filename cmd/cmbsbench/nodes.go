package main

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/cmbs/cmbs/internal/loopback"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/cmbs/cmbs/cmbs"
	"github.com/cmbs/cmbs/occi"
	"github.com/cmbs/cmbs/providers"
	"github.com/cmbs/cmbs/providers/process"
	"github.com/cmbs/cmbs/store/sqlite"
)

// The pyCMBS category and provider files, embedded so that the built
// command runs from any directory: copies of testdata/pycmbs (go:embed
// cannot reach it), kept equal by TestEmbeddedFilesMatchTestdata.
//
//go:embed pycmbs/*.json
var pycmbsFiles embed.FS

// cmbsNode is one cmbsd server: an OCCI server with its own embedded store
// (in a temporary directory) and a real CMBS broker, driven in-process
// through its HTTP handler (no HTTP listener: the broker's own ZeroMQ
// sockets are the only ones it opens).
type cmbsNode struct {
	dir    string
	srv    *occi.Server
	reg    *providers.Registry
	broker *cmbs.Broker
	close  func() error
}

// brokerOptions are the broker settings of every bench node.
func brokerOptions(log *slog.Logger) cmbs.Options {
	// As cmbsd on its embedded store: the member list is exact (the
	// broker sees every change), so it is not read again every second.
	return cmbs.Options{Logger: log, RequestTimeout: 5 * time.Second, DiscoveryTimeout: 30 * time.Second, MembersMaxAge: time.Minute}
}

func startNode(ctx context.Context, log *slog.Logger) (*cmbsNode, error) {
	return startNodeWith(ctx, log, brokerOptions(log))
}

// startNodeWith is startNode with other broker options.
func startNodeWith(ctx context.Context, log *slog.Logger, opts cmbs.Options) (*cmbsNode, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	dir, err := os.MkdirTemp("", "cmbsbench-node-")
	if err != nil {
		return nil, err
	}
	st, err := openEmbedded(ctx, filepath.Join(dir, "cmbs.db"), log)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	n := &cmbsNode{dir: dir, reg: providers.NewRegistry()}
	n.close = func() error {
		stopCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err := n.reg.Stop(stopCtx)
		if n.srv != nil {
			err = errors.Join(err, n.srv.Entities().Flush(stopCtx))
		}
		err = errors.Join(err, st.Close())
		os.RemoveAll(dir)
		return err
	}
	fail := func(err error) (*cmbsNode, error) { _ = n.close(); return nil, err }
	if n.srv, err = occi.NewServer(ctx, occi.Options{Store: st, Providers: n.reg, Logger: log}); err != nil {
		return fail(err)
	}
	n.broker = cmbs.NewBroker(n.srv.Entities(), opts)
	if err := n.broker.Register(n.reg); err != nil {
		return fail(err)
	}
	if err := n.reg.Start(ctx); err != nil {
		return fail(err)
	}
	for _, f := range []struct{ method, name string }{
		{"POST", "post_category_cmbs_member.json"}, {"PUT", "put_provider_cmbs_member.json"},
		{"POST", "post_category_cmbs_message.json"}, {"PUT", "put_provider_cmbs_message.json"},
	} {
		body, err := pycmbsFiles.ReadFile("pycmbs/" + f.name)
		if err != nil {
			return fail(err)
		}
		if _, err := n.do(ctx, f.method, "/-/", body, 200); err != nil {
			return fail(err)
		}
	}
	return n, nil
}

// do runs one OCCI JSON request through the server's handler.
func (n *cmbsNode) do(ctx context.Context, method, path string, body any, want ...int) ([]byte, error) {
	raw, ok := body.([]byte)
	if !ok && body != nil {
		var err error
		if raw, err = json.Marshal(body); err != nil {
			return nil, err
		}
	}
	req := httptest.NewRequestWithContext(ctx, method, "http://cmbsbench"+path, bytes.NewReader(raw))
	req.Header.Set("Content-Type", "application/occi+json")
	req.Header.Set("Accept", "application/occi+json")
	rec := httptest.NewRecorder()
	n.srv.Handler().ServeHTTP(rec, req)
	for _, w := range want {
		if rec.Code == w {
			return rec.Body.Bytes(), nil
		}
	}
	return rec.Body.Bytes(), &statusError{fmt.Sprintf("%s %s: status %d: %.300s", method, path, rec.Code, rec.Body.Bytes()), rec.Code}
}

type statusError struct {
	msg    string
	status int
}

func (e *statusError) Error() string { return e.msg }

// freeSocket returns a loopback endpoint nobody listens on (yet).
func freeSocket() (string, error) { return loopback.Free() }

// createMember creates a local member with a free socket for every layer
// (extra attributes added) and starts the given layers; it returns the
// member's location and its sockets by layer.
func (n *cmbsNode) createMember(ctx context.Context, id string, extra map[string]any, layers ...string) (string, map[string]string, error) {
	sockets := map[string]string{}
	attrs := map[string]any{"local": "true", "state": "active"}
	for _, l := range []string{"l1", "l2", "l31", "l32", "l4"} {
		s, err := freeSocket()
		if err != nil {
			return "", nil, err
		}
		sockets[l] = s
		attrs[l+"_socket"] = s
	}
	for k, v := range extra {
		attrs[k] = v
	}
	desc := map[string]any{
		"kind": cmbs.MemberKindID, "mixins": []any{}, "id": id, "title": "member " + id,
		"attributes": map[string]any{"cmbs": map[string]any{"member": attrs}},
	}
	if _, err := n.do(ctx, "POST", "/cmbs/member/", map[string]any{"resources": []any{desc}}, 201); err != nil {
		return "", nil, err
	}
	loc := "/cmbs/member/" + id
	for _, l := range layers {
		s, err := n.startLayer(ctx, loc, l)
		if err != nil {
			return "", nil, err
		}
		sockets[l] = s
	}
	return loc, sockets, nil
}

// startLayer starts a layer; when its port was taken meanwhile, it moves
// the layer to another free port and tries again.
func (n *cmbsNode) startLayer(ctx context.Context, loc, layer string) (string, error) {
	for attempt := 0; ; attempt++ {
		body, err := n.do(ctx, "POST", loc+"?action=start_"+layer, map[string]any{}, 200)
		if err == nil {
			var res struct{ Socket string }
			err = json.Unmarshal(body, &res)
			return res.Socket, err
		}
		var se *statusError
		if !errors.As(err, &se) || se.status != 409 || !strings.Contains(se.msg, "in use") || attempt == 5 {
			return "", err
		}
		s, err := freeSocket()
		if err != nil {
			return "", err
		}
		upd := map[string]any{"attributes": map[string]any{"cmbs": map[string]any{"member": map[string]any{layer + "_socket": s}}}}
		if _, err := n.do(ctx, "POST", loc, map[string]any{"resources": []any{upd}}, 200, 201); err != nil {
			return "", err
		}
	}
}

// createMessages creates messages of a layer in batches (one POST per 200)
// and returns their locations.
func (n *cmbsNode) createMessages(ctx context.Context, prefix, layer string, count int, attrs map[string]any) ([]string, error) {
	var locs []string
	for from := 0; from < count; from += 200 {
		var descs []any
		for i := from; i < count && i < from+200; i++ {
			a := map[string]any{"cmbs_layer": layer, "path_history": []any{}}
			for k, v := range attrs {
				a[k] = v
			}
			id := fmt.Sprintf("%s-%06d", prefix, i)
			descs = append(descs, map[string]any{
				"kind": cmbs.MessageKindID, "mixins": []any{"http://houssem.org/cmbs#" + layer}, "id": id,
				"title":      layer + " bench message",
				"attributes": map[string]any{"cmbs": map[string]any{"message": a}},
			})
			locs = append(locs, "/cmbs/message/"+id)
		}
		if _, err := n.do(ctx, "POST", "/cmbs/message/", map[string]any{"resources": descs}, 201); err != nil {
			return nil, err
		}
	}
	return locs, nil
}

// startNodes starts count nodes, a few at a time; on error the ones
// started are closed.
func startNodes(ctx context.Context, count int, log *slog.Logger) ([]*cmbsNode, error) {
	nodes := make([]*cmbsNode, count)
	errs := make([]error, count)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	for i := range nodes {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			nodes[i], errs[i] = startNode(ctx, log)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		closeNodes(nodes)
		return nil, err
	}
	return nodes, nil
}

// closeNodes stops every node's broker (all its sockets and goroutines)
// and store, concurrently.
func closeNodes(nodes []*cmbsNode) error {
	errs := make([]error, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		if n == nil {
			continue
		}
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = n.close() }()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// startFanoutMesh starts receivers+1 nodes: one member on each of the
// receivers nodes (with the given topics when not nil, and layers started),
// and a sending member on the first whose neighbours they are, which has
// learned them all through check_neighbors. closeMesh stops every node.
func startFanoutMesh(ctx context.Context, log *slog.Logger, receivers int, topics []any, layers ...string) (sender *cmbsNode, recv []*cmbsNode, closeMesh func() error, err error) {
	nodes, err := startNodes(ctx, receivers+1, log)
	if err != nil {
		return nil, nil, nil, err
	}
	closeMesh = func() error { return closeNodes(nodes) }
	defer func() {
		if err != nil {
			_ = closeMesh()
		}
	}()
	sender, recv = nodes[0], nodes[1:]
	withTopics := func(attrs map[string]any) map[string]any {
		if topics != nil {
			attrs["topics"] = topics
		}
		return attrs
	}
	var l1s []any
	for i, n := range recv {
		_, s, err := n.createMember(ctx, fmt.Sprintf("r%02d", i), withTopics(map[string]any{}), layers...)
		if err != nil {
			return nil, nil, nil, err
		}
		l1s = append(l1s, s["l1"])
	}
	sloc, _, err := sender.createMember(ctx, "s", withTopics(map[string]any{"neighbors_socket": l1s}))
	if err != nil {
		return nil, nil, nil, err
	}
	d, err := sender.do(ctx, "POST", sloc+"?action=check_neighbors", map[string]any{}, 200)
	if err != nil {
		return nil, nil, nil, err
	}
	var disc cmbs.Discovery
	if err := json.Unmarshal(d, &disc); err != nil || len(disc.Learned) != receivers {
		return nil, nil, nil, fmt.Errorf("check_neighbors learned %d of %d members (%v): %.300s", len(disc.Learned), receivers, err, d)
	}
	return sender, recv, closeMesh, nil
}

// sendEach triggers action (send_l2, …) on every message at locs, window
// at a time, then waits until every send's result is stored; failed is
// the deliveries the sends reported failed.
func (n *cmbsNode) sendEach(ctx context.Context, locs []string, action string, window int) (failed int, err error) {
	var mu sync.Mutex
	_, err = runWorkers(ctx, len(locs), window, func(ctx context.Context, i int) error {
		ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		res, err := n.srv.Entities().Trigger(ctx, locs[i], action, nil)
		if err != nil {
			return err
		}
		if s, ok := res.(*cmbs.Sent); ok && s.Failed > 0 {
			mu.Lock()
			failed += s.Failed
			mu.Unlock()
		}
		return nil
	})
	if err == nil {
		err = n.srv.Entities().Settle(ctx)
	}
	if err != nil {
		return 0, fmt.Errorf("%s: %w", action, err)
	}
	return failed, nil
}

// openEmbedded opens an embedded store as cmbsd does (the broker's and the
// process records' never-searched paths left out of the index), so that
// the phases measure cmbsd's setup.
func openEmbedded(ctx context.Context, path string, log *slog.Logger) (*sqlite.Store, error) {
	return sqlite.Open(ctx, path, sqlite.WithLogger(log), sqlite.WithUnindexed(cmbs.UnindexedPaths...), sqlite.WithUnsearched(process.UnindexedPaths...))
}
