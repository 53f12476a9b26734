package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/cmbs/cmbs/store"
	"github.com/cmbs/cmbs/store/mango"
)

// Find answers a selector in two steps. First the selector is turned into a
// narrowing: a boolean combination of index lookups ("documents with a row
// (path, value) in fields", or a condition on the id) that is guaranteed to
// include every match. Then SQLite returns the documents the narrowing
// admits, and the Mango matcher keeps the exact matches.
//
// Two query shapes are used:
//   - driven: the documents are fetched by the ids the most selective lookup
//     lists (bounded probes count its rows), the rest of the narrowing is
//     checked with EXISTS on the index, and SQLite sorts the candidates by
//     _id; the cost follows the number of candidates, not the size of the
//     database.
//   - ordered: the documents are read in _id order (the default sort) with
//     the narrowing as EXISTS filters. Chosen when no lookup narrows much,
//     or when a limit will be reached after fewer documents than driving
//     would read.
// Either way the rows arrive in _id order and Find stops at skip+limit
// matches unless it must sort by other fields.

// Probes count a lookup's rows up to a cap. A lookup under probeSmall is
// driven from at once; otherwise plan counts again with larger caps. With a
// limit in _id order, driving never reads more than driveLimit candidates.
const (
	probeSmall        = 64
	defaultDriveLimit = 4096
)

type narrowKind int

const (
	nAll   narrowKind = iota // no restriction
	nNone                    // nothing can match
	nField                   // a row in fields for path, with pred on value
	nID                      // pred on docs.id
	nAnd
	nOr
)

// narrowing is a superset of the documents a selector matches.
type narrowing struct {
	kind    narrowKind
	partial bool   // nField: the lookup of partial rows, resolved only where some exist
	path    string // pathKey (nField)
	pid     int64  // interned path (nField)
	pred    string // SQL condition on value (nField, may be empty) or id (nID)
	args    []any
	kids    []*narrowing
}

var (
	narrowAll  = &narrowing{kind: nAll}
	narrowNone = &narrowing{kind: nNone}
)

func fieldNarrowing(key, pred string, args ...any) *narrowing {
	return &narrowing{kind: nField, path: key, pred: pred, args: args}
}

func andNarrowing(kids ...*narrowing) *narrowing {
	out := &narrowing{kind: nAnd}
	var id *narrowing // conditions on _id, merged so one index range serves them
	for _, k := range kids {
		switch k.kind {
		case nAll:
		case nNone:
			return narrowNone
		case nAnd:
			out.kids = append(out.kids, k.kids...)
		case nID:
			if id == nil {
				id = k
			} else {
				id = &narrowing{kind: nID, pred: id.pred + " AND " + k.pred, args: slices.Concat(id.args, k.args)}
			}
		default:
			out.kids = append(out.kids, k)
		}
	}
	if id != nil {
		out.kids = append(out.kids, id)
	}
	switch len(out.kids) {
	case 0:
		return narrowAll
	case 1:
		return out.kids[0]
	}
	return out
}

func orNarrowing(kids ...*narrowing) *narrowing {
	out := &narrowing{kind: nOr}
	for _, k := range kids {
		switch k.kind {
		case nAll:
			return narrowAll
		case nNone:
		case nOr:
			out.kids = append(out.kids, k.kids...)
		default:
			out.kids = append(out.kids, k)
		}
	}
	switch len(out.kids) {
	case 0:
		return narrowNone
	case 1:
		return out.kids[0]
	}
	return out
}

// narrow computes the narrowing of a normalised selector node; prefix is the
// path of the array an $elemMatch applies to; a condition on a path omit
// omits (WithUnsearched) narrows nothing.
func narrow(n *mango.Node, prefix []string, omit unindexedPaths) *narrowing {
	switch n.Op {
	case mango.OpAnd:
		kids := make([]*narrowing, 0, len(n.Args))
		for _, a := range n.Args {
			kids = append(kids, narrow(a, prefix, omit))
		}
		return andNarrowing(kids...)
	case mango.OpOr:
		if len(n.Args) == 0 {
			return narrowAll
		}
		kids := make([]*narrowing, 0, len(n.Args))
		for _, a := range n.Args {
			kids = append(kids, narrow(a, prefix, omit))
		}
		return orNarrowing(kids...)
	case "":
		path := slices.Concat(prefix, n.Path)
		if len(prefix) == 0 && len(path) == 1 {
			switch path[0] {
			case "_id":
				return idNarrowing(n.Cond)
			case "_rev":
				return narrowAll
			}
		}
		if len(path) == 0 || omit.omitsAny(path) {
			return narrowAll
		}
		for _, seg := range path {
			// A decimal segment may be an array index, which the index
			// does not record (arrays are transparent there).
			if _, err := strconv.Atoi(seg); err == nil {
				return narrowAll
			}
		}
		return withPartial(path, condNarrowing(path, n.Cond, omit))
	}
	// $not and $nor survive normalisation only inside $elemMatch.
	return narrowAll
}

// withPartial widens a field condition's narrowing to the documents whose
// rows were capped at the path or one of its prefixes (see fields.go).
func withPartial(path []string, n *narrowing) *narrowing {
	if n.kind == nAll || n.kind == nNone {
		return n
	}
	kids := []*narrowing{n}
	for i := 0; i <= min(len(path), maxIndexDepth); i++ {
		kids = append(kids, &narrowing{kind: nField, partial: true, path: pathKey(path[:i]), pred: "value = ?", args: []any{tagPartial}})
	}
	return orNarrowing(kids...)
}

func condNarrowing(path []string, c *mango.Node, omit unindexedPaths) *narrowing {
	if len(path) > maxIndexDepth {
		if c.Op == mango.OpExists && !c.Val.(bool) {
			return narrowAll
		}
		// Every other condition needs the field, so an object where the
		// index stops (arrays on the way are transparent).
		return fieldNarrowing(pathKey(path[:maxIndexDepth]), "value = ?", tagObject)
	}
	key := pathKey(path)
	exists := fieldNarrowing(key, "")
	switch c.Op {
	case mango.OpEq:
		return eqNarrowing(key, c.Val)
	case mango.OpIn:
		args := c.Val.([]any)
		kids := make([]*narrowing, 0, len(args))
		for _, a := range args {
			kids = append(kids, eqNarrowing(key, a))
		}
		return orNarrowing(kids...)
	case mango.OpGt, mango.OpGte:
		// Everything that collates after the argument: for a number, larger
		// numbers and every string, array and object; for a string, every
		// string (SQLite compares bytes, CouchDB by UCA), array and object.
		switch v := c.Val.(type) {
		case float64:
			op := ">"
			if c.Op == mango.OpGte {
				op = ">="
			}
			return fieldNarrowing(key, "value "+op+" ?", v)
		case string:
			return fieldNarrowing(key, "value >= ''")
		case []any:
			return fieldNarrowing(key, "value >= ?", tagArray)
		case map[string]any:
			return fieldNarrowing(key, "value >= ?", tagObject)
		}
		return exists
	case mango.OpLt, mango.OpLte:
		if v, ok := c.Val.(float64); ok {
			op := "<"
			if c.Op == mango.OpLte {
				op = "<="
			}
			// null and booleans collate before numbers but are BLOBs here.
			return orNarrowing(fieldNarrowing(key, "value "+op+" ?", v), fieldNarrowing(key, "value IN (?, ?, ?)", tagNull, tagFalse, tagTrue))
		}
		return exists
	case mango.OpAll:
		args := c.Val.([]any)
		if len(args) == 0 {
			return narrowNone
		}
		kids := []*narrowing{fieldNarrowing(key, "value = ?", tagArray)}
		for _, a := range args {
			if fv, ok, _ := scalarValue(a); ok {
				kids = append(kids, fieldNarrowing(key, "value = ?", fv.sqlValue()))
			}
		}
		return andNarrowing(kids...)
	case mango.OpSize:
		return fieldNarrowing(key, "value = ?", tagArray)
	case mango.OpElemMatch, mango.OpAllMatch:
		return andNarrowing(fieldNarrowing(key, "value = ?", tagArray), narrow(c.Cond, path, omit))
	case mango.OpKeyMapMatch:
		return fieldNarrowing(key, "value = ?", tagObject)
	case mango.OpRegex:
		// Strings only: all TEXT values sort before the smallest BLOB.
		return fieldNarrowing(key, "value >= '' AND value < x''")
	case mango.OpExists:
		if c.Val.(bool) {
			return exists
		}
		return narrowAll
	}
	// $ne, $nin, $type, $mod, $not: the field must exist.
	return exists
}

func eqNarrowing(key string, v any) *narrowing {
	if fv, ok, _ := scalarValue(v); ok {
		return fieldNarrowing(key, "value = ?", fv.sqlValue())
	}
	switch t := v.(type) {
	case []any:
		// An equal array has this element, indexed under the same path.
		for _, e := range t {
			if fv, ok, _ := scalarValue(e); ok {
				return fieldNarrowing(key, "value = ?", fv.sqlValue())
			}
		}
		return fieldNarrowing(key, "value = ?", tagArray)
	case map[string]any:
		return fieldNarrowing(key, "value = ?", tagObject)
	}
	return fieldNarrowing(key, "")
}

// idNarrowing narrows on _id, which CouchDB compares byte-wise, as SQLite
// does.
func idNarrowing(c *mango.Node) *narrowing {
	switch c.Op {
	case mango.OpEq:
		if s, ok := c.Val.(string); ok {
			return &narrowing{kind: nID, pred: "id = ?", args: []any{s}}
		}
		return narrowNone
	case mango.OpIn:
		var ids []any
		for _, a := range c.Val.([]any) {
			if s, ok := a.(string); ok {
				ids = append(ids, s)
			}
		}
		if len(ids) == 0 {
			return narrowNone
		}
		return &narrowing{kind: nID, pred: "id IN (" + placeholders(len(ids)) + ")", args: ids}
	case mango.OpGt, mango.OpGte, mango.OpLt, mango.OpLte:
		if s, ok := c.Val.(string); ok {
			op := map[string]string{mango.OpGt: ">", mango.OpGte: ">=", mango.OpLt: "<", mango.OpLte: "<="}[c.Op]
			return &narrowing{kind: nID, pred: "id " + op + " ?", args: []any{s}}
		}
	}
	return narrowAll
}

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

// resolve interns the paths of the narrowing; a path no document ever had
// makes its lookup empty.
func (s *Store) resolve(ctx context.Context, n *narrowing) (*narrowing, error) {
	switch n.kind {
	case nField:
		if n.partial {
			pid, ok := s.partialPath(n.path)
			if !ok {
				return narrowNone, nil
			}
			out := *n
			out.pid = pid
			return &out, nil
		}
		pid, ok, err := s.lookupPath(ctx, n.path)
		if err != nil {
			return nil, err
		}
		if !ok {
			return narrowNone, nil
		}
		out := *n
		out.pid = pid
		return &out, nil
	case nAnd, nOr:
		kids := make([]*narrowing, 0, len(n.kids))
		for _, k := range n.kids {
			r, err := s.resolve(ctx, k)
			if err != nil {
				return nil, err
			}
			kids = append(kids, r)
		}
		if n.kind == nAnd {
			return andNarrowing(kids...), nil
		}
		return orNarrowing(kids...), nil
	}
	return n, nil
}

// maxLookups bounds the index lookups one query uses. SQLite refuses an
// expression deeper than 1000, a compound SELECT of more than 500 terms and
// more than 32766 variables; a selector with more alternatives (an $or of
// thousands of objects) is narrowed less and matched in Go instead of
// failing.
const maxLookups = 200

// bound returns a narrowing of at most budget lookups that still admits
// every document n admits, and the lookups it uses: an AND keeps the kids
// that fit, an OR that does not fit admits everything.
func bound(n *narrowing, budget int) (*narrowing, int) {
	switch n.kind {
	case nField, nID:
		cost := 1 + len(n.args)/100 // an _id $in list is one lookup of many variables
		if cost > budget {
			return narrowAll, 0
		}
		return n, cost
	case nAnd:
		kept := make([]*narrowing, 0, len(n.kids))
		used, changed := 0, false
		for _, k := range n.kids {
			b, c := bound(k, budget-used)
			kept = append(kept, b)
			used += c
			changed = changed || b != k
		}
		if !changed {
			return n, used
		}
		return andNarrowing(kept...), used
	case nOr:
		used := 0
		for _, k := range n.kids {
			b, c := bound(k, budget-used)
			if b != k {
				return narrowAll, 0
			}
			used += c
		}
		return n, used
	}
	return n, 0
}

// driver is a subquery listing candidate rids, with its estimated size.
type driver struct {
	node *narrowing
	sql  string
	args []any
	est  int
}

// drive picks the most selective way to list candidates for n, counting
// each lookup's rows up to limit+1.
func (s *Store) drive(ctx context.Context, n *narrowing, limit int) (*driver, error) {
	switch n.kind {
	case nField, nID:
		d := &driver{node: n}
		if n.kind == nField {
			d.sql = "SELECT rid FROM fields WHERE pid = ?"
			d.args = append([]any{n.pid}, n.args...)
			if n.pred != "" {
				d.sql += " AND " + n.pred
			}
		} else {
			d.sql = "SELECT rid FROM docs WHERE " + n.pred
			d.args = n.args
		}
		stmt, release, err := s.queryStmt(ctx, "SELECT count(*) FROM ("+d.sql+" LIMIT ?)")
		if err != nil {
			return nil, err
		}
		err = stmt.QueryRowContext(ctx, append(slices.Clone(d.args), limit+1)...).Scan(&d.est)
		release()
		if err != nil {
			return nil, queryError(ctx, err)
		}
		return d, nil
	case nAnd:
		var best *driver
		for _, k := range n.kids {
			d, err := s.drive(ctx, k, limit)
			if err != nil {
				return nil, err
			}
			if d != nil && (best == nil || d.est < best.est) {
				best = d
			}
		}
		return best, nil
	case nOr:
		out := &driver{node: n}
		var parts []string
		for _, k := range n.kids {
			d, err := s.drive(ctx, k, limit)
			if err != nil || d == nil {
				return nil, err
			}
			parts = append(parts, d.sql)
			out.args = append(out.args, d.args...)
			out.est += d.est
		}
		out.sql = strings.Join(parts, " UNION ")
		return out, nil
	}
	return nil, nil
}

// filterSQL renders n as a condition on the docs row d; skip (the driver's
// own lookup) is left out.
func filterSQL(n, skip *narrowing, args *[]any) string {
	if n == skip {
		return "1"
	}
	switch n.kind {
	case nNone:
		return "0"
	case nField:
		*args = append(*args, n.pid)
		*args = append(*args, n.args...)
		// The index is ordered by (pid, value, rid) only: a condition
		// naming the values is a few probes per document; any other
		// lists its documents once.
		if pointPred(n.pred) {
			return "EXISTS (SELECT 1 FROM fields f WHERE f.pid = ? AND f." + n.pred + " AND f.rid = d.rid)"
		}
		q := "d.rid IN (SELECT rid FROM fields WHERE pid = ?"
		if n.pred != "" {
			q += " AND " + n.pred
		}
		return q + ")"
	case nID:
		*args = append(*args, n.args...)
		return "d." + n.pred
	case nAnd, nOr:
		sep := " AND "
		if n.kind == nOr {
			sep = " OR "
		}
		parts := make([]string, 0, len(n.kids))
		for _, k := range n.kids {
			parts = append(parts, filterSQL(k, skip, args))
		}
		return "(" + strings.Join(parts, sep) + ")"
	}
	return "1"
}

// pointPred reports whether a field narrowing's condition names its
// values ("value = ?" or "value IN (…)").
func pointPred(pred string) bool {
	return pred == "value = ?" || strings.HasPrefix(pred, "value IN (") && !strings.Contains(pred, " AND ")
}

// findPlan is the SQL chosen for a query.
type findPlan struct {
	driven  bool // fetch by a driver's rids (else read in _id order)
	ordered bool // rows arrive in the requested order (stop at skip+limit)
	est     int
	sql     string
	args    []any
}

// sortOrder describes Query.Sort.
type sortOrder struct {
	byID   bool // only _id (or nothing): no sort in Go needed when reading in _id order
	idDesc bool
	fields [][]string
	desc   []bool
}

func parseSort(sort []store.SortField) (sortOrder, error) {
	o := sortOrder{byID: true}
	for i, f := range sort {
		p, err := mango.SplitField(f.Field)
		if err != nil {
			return o, err
		}
		if len(p) == 1 && p[0] == "_id" && i == len(sort)-1 && i == 0 {
			o.idDesc = f.Desc
			continue
		}
		o.byID = false
		o.fields = append(o.fields, p)
		o.desc = append(o.desc, f.Desc)
	}
	return o, nil
}

// plan chooses the query for a selector. want is skip+limit when the caller
// has a limit, else 0.
func (s *Store) plan(ctx context.Context, sel *mango.Selector, order sortOrder, want int) (*findPlan, error) {
	n := narrowAll
	if sel.Root != nil {
		var err error
		if n, err = s.resolve(ctx, narrow(sel.Root, nil, s.unindexed)); err != nil {
			return nil, err
		}
		n, _ = bound(n, maxLookups)
	}
	if n.kind == nNone {
		return nil, nil
	}
	// With a limit and the _id order, reading in _id order stops early.
	stream := order.byID && want > 0

	d, err := s.drive(ctx, n, probeSmall)
	if err != nil {
		return nil, err
	}
	if d != nil && d.est > probeSmall {
		total, err := s.docCount(ctx)
		if err != nil {
			return nil, err
		}
		if stream {
			// Reading in _id order finds want matches after about
			// want*total/est documents; driving reads est of them. So
			// driving pays only below est = sqrt(want*total).
			limit := min(s.driveLimit, int(math.Sqrt(float64(want)*float64(total))))
			if d, err = s.drive(ctx, n, limit); err != nil {
				return nil, err
			}
			if d != nil && d.est > limit {
				d = nil
			}
		} else {
			// Every match is read anyway: drive unless the best lookup
			// lists about every document. Caps grow geometrically, so the
			// probes cost a fraction of reading the candidates.
			for c := probeSmall * 8; ; c *= 8 {
				if d, err = s.drive(ctx, n, c); err != nil {
					return nil, err
				}
				if d == nil || d.est <= c {
					break
				}
				if c >= total {
					d = nil
					break
				}
			}
		}
	}

	p := &findPlan{ordered: order.byID}
	dir := ""
	if order.idDesc {
		dir = " DESC"
	}
	orderBy := ""
	if order.byID {
		orderBy = " ORDER BY d.id" + dir
	}
	var args []any
	if d != nil {
		p.driven, p.est = true, d.est
		args = append(args, d.args...)
		filter := filterSQL(n, d.node, &args)
		// CROSS JOIN keeps the candidates as the outer loop: SQLite would
		// otherwise be free to walk docs_by_id for the ORDER BY.
		p.sql = "SELECT d.id, d.rev, d.body FROM (SELECT DISTINCT rid FROM (" + d.sql + ")) AS c CROSS JOIN docs d ON d.rid = c.rid" +
			" WHERE d.deleted = 0 AND " + filter + orderBy
	} else {
		filter := filterSQL(n, nil, &args)
		p.sql = "SELECT d.id, d.rev, d.body FROM docs d INDEXED BY docs_by_id WHERE d.deleted = 0 AND " + filter + " ORDER BY d.id" + dir
	}
	p.args = args
	return p, nil
}

// docCount estimates the number of documents (deleted ones included) in
// constant time.
func (s *Store) docCount(ctx context.Context) (int, error) {
	var n int
	if err := s.rMaxRID.QueryRowContext(ctx).Scan(&n); err != nil {
		return 0, dbError(ctx, err)
	}
	return n, nil
}

type hit struct {
	doc  store.Document
	keys []any  // sort field values
	miss []bool // miss[i]: the document lacks sort field i
}

// Find implements store.Store.
func (s *Store) Find(ctx context.Context, q store.Query) ([]store.Document, error) {
	if err := s.checkOpen(); err != nil {
		return nil, fmt.Errorf("find: %w", err)
	}
	if q.Limit < 0 || q.Skip < 0 {
		return nil, fmt.Errorf("find: %w: negative limit or skip", store.ErrInvalid)
	}
	sel, err := mango.Parse(q.Selector)
	if err != nil {
		return nil, fmt.Errorf("find: %w: %w", store.ErrInvalid, err)
	}
	order, err := parseSort(q.Sort)
	if err != nil {
		return nil, fmt.Errorf("find: %w: sort: %w", store.ErrInvalid, err)
	}
	want := 0
	if q.Limit > 0 {
		want = q.Skip + q.Limit
	}
	p, err := s.plan(ctx, sel, order, want)
	if err != nil {
		return nil, fmt.Errorf("find: %w", err)
	}
	if p == nil {
		return nil, nil
	}
	s.log.DebugContext(ctx, "find", "driven", p.driven, "estimate", p.est, "ordered", p.ordered)

	stmt, release, err := s.queryStmt(ctx, p.sql)
	if err != nil {
		return nil, fmt.Errorf("find: %w", err)
	}
	defer release()
	rows, err := stmt.QueryContext(ctx, p.args...)
	if err != nil {
		return nil, fmt.Errorf("find: %w", queryError(ctx, err))
	}
	defer rows.Close()
	var hits []hit
	for rows.Next() {
		var h hit
		var body []byte
		if err := rows.Scan(&h.doc.ID, &h.doc.Rev, &body); err != nil {
			return nil, fmt.Errorf("find: %w", queryError(ctx, err))
		}
		var doc map[string]any
		if err := json.Unmarshal(body, &doc); err != nil {
			return nil, fmt.Errorf("find: %w: stored body of %q: %w", store.ErrUnavailable, h.doc.ID, err)
		}
		doc["_id"], doc["_rev"] = h.doc.ID, h.doc.Rev
		if !sel.Match(doc) {
			continue
		}
		h.doc.Body = body
		if !order.byID {
			h.keys = make([]any, len(order.fields))
			h.miss = make([]bool, len(order.fields))
			for i, f := range order.fields {
				v, st := mango.GetField(doc, f)
				h.keys[i], h.miss[i] = v, st != mango.Found
			}
		}
		hits = append(hits, h)
		if p.ordered && want > 0 && len(hits) >= want {
			break
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("find: %w", queryError(ctx, err))
	}
	if !p.ordered {
		sortHits(hits, order)
	}
	if q.Skip >= len(hits) {
		return nil, nil
	}
	hits = hits[q.Skip:]
	if q.Limit > 0 && q.Limit < len(hits) {
		hits = hits[:q.Limit]
	}
	out := make([]store.Document, len(hits))
	for i, h := range hits {
		out[i] = h.doc
	}
	return out, nil
}

// sortHits orders by the sort fields (CouchDB collation, a missing field
// first), then by _id.
func sortHits(hits []hit, o sortOrder) {
	slices.SortFunc(hits, func(a, b hit) int {
		for i := range o.fields {
			c := compareSortKey(a.keys[i], a.miss[i], b.keys[i], b.miss[i], len(o.fields[i]) == 1 && o.fields[i][0] == "_id")
			if o.desc[i] {
				c = -c
			}
			if c != 0 {
				return c
			}
		}
		c := strings.Compare(a.doc.ID, b.doc.ID)
		if o.byID && o.idDesc {
			c = -c
		}
		return c
	})
}

func compareSortKey(a any, aMiss bool, b any, bMiss bool, raw bool) int {
	switch {
	case aMiss && bMiss:
		return 0
	case aMiss:
		return -1
	case bMiss:
		return 1
	case raw:
		return mango.CompareRaw(a, b)
	}
	return mango.Compare(a, b)
}

// queryError is dbError for a query: SQLite's refusal of a query it finds
// too large or too deep (which bound should prevent) is the request's
// fault, not an outage.
func queryError(ctx context.Context, err error) error {
	if ctx.Err() == nil {
		msg := err.Error()
		for _, s := range []string{"too many terms", "too many SQL variables", "too large (maximum depth", "stack overflow", "too complex", "too big"} {
			if strings.Contains(msg, s) {
				return fmt.Errorf("%w: the query is too large for the embedded store: %w", store.ErrInvalid, err)
			}
		}
	}
	return dbError(ctx, err)
}

// maxCachedStmts bounds the prepared query cache. Query texts depend on the
// shape of a selector, not on its values, so an application uses few.
const maxCachedStmts = 512

// queryStmt returns a prepared statement for a Find query text, and a func
// to call when done with it. Parsing costs about as much as running a
// selective query, so statements are kept for the store's lifetime; once the
// cache is full, new texts are prepared for one use.
func (s *Store) queryStmt(ctx context.Context, query string) (*sql.Stmt, func(), error) {
	s.stmtsMu.Lock()
	defer s.stmtsMu.Unlock()
	if st, ok := s.stmts[query]; ok {
		return st, func() {}, nil
	}
	st, err := s.reader.PrepareContext(ctx, query)
	if err != nil {
		return nil, nil, queryError(ctx, err)
	}
	if len(s.stmts) < maxCachedStmts {
		s.stmts[query] = st
		return st, func() {}, nil
	}
	return st, func() { st.Close() }, nil
}
