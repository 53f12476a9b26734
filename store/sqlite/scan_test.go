package sqlite

import (
	"bytes"
	"maps"
	"strings"
	"testing"
)

// slowBody is the decoding path scanBody stands in for.
func slowBody(raw []byte, skip unindexedPaths) ([]byte, map[fieldRow]struct{}, error) {
	body, obj, err := canonicalBody(raw)
	if err != nil {
		return nil, nil, err
	}
	rows, err := indexRows(obj, skip)
	if err != nil {
		return nil, nil, err
	}
	return body, rows, nil
}

var scanSeeds = []string{
	`{}`,
	` { "a" : 1 } `,
	`{"kind":"k","attributes":{"cmbs":{"message":{"storable":"true","result":{"deliveries":[{"member":"m","ack":{"x":1}}],"delivered":1}}}},"mixins":["a","b"],"links":[]}`,
	`{"a":[1,[2,{"b":null}],true,false,-0.5e-3,"x\u00e9\n"]}`,
	`{"a":{"b":{"c":{"d":{"e":{"f":1}}}}}}`,
	`{"a":{"b":{"c":{"d":{"e":1,"e":2}}}}}`,
	`{"a":1,"a":2}`,
	`{"_id":"x","a":1}`,
	`{"_x":1}`,
	`{"a":1e400}`,
	`{"a":{"b":{"c":{"d":{"e":{"f":1e400}}}}}}`,
	`{"a":"\ud800"}`,
	"{\"a\":\"\xff\"}",
	"{\"\xe9\":\"\\u0000\"}",
	`{"a\u0000b":1}`,
	`{"a":"\x"}`,
	`{"a":01}`,
	`{"a":-}`,
	`{"a":1.}`,
	`{"a":tru}`,
	`{"a":1}x`,
	`[1]`,
	`{"a":[}`,
	"{\"a\":\"\t\"}",
	// Arrays over the element cap, at the top and nested; a document
	// over the row cap.
	`{"t":[` + strings.Repeat(`"x",`, maxIndexedElements) + `"y"],"k":"v"}`,
	`{"t":[` + strings.Repeat(`{"a":[1,2]},`, maxIndexedElements) + `{"a":3}],"u":[[` + strings.Repeat(`1,`, maxIndexedElements) + `2]]}`,
	`{"t":[` + strings.Repeat(`"x",`, maxIndexedElements-1) + `"y"]}`,
	`{"a":[` + strings.Repeat(`[`+strings.Repeat(`"x",`, maxIndexedElements/2)+`"y"],`, maxDocRows/maxIndexedElements*3) + `1]}`,
}

func TestScanBodyAgrees(t *testing.T) {
	for _, seed := range scanSeeds {
		checkScanBody(t, []byte(seed))
	}
	// A body as the entity service writes it takes the fast path.
	if _, _, ok := scanBody([]byte(scanSeeds[2]), nil); !ok {
		t.Fatalf("an ordinary entity body fell back to decoding")
	}
	// An unindexed path: its value's marker and a partial row, nothing
	// inside.
	_, rows, ok := scanBody([]byte(scanSeeds[2]), testUnindexed)
	if !ok {
		t.Fatal("an ordinary entity body with an unindexed path fell back to decoding")
	}
	result := pathKey([]string{"attributes", "cmbs", "message", "result"})
	if _, ok := rows[fieldRow{result, tagValue(tagPartial)}]; !ok {
		t.Errorf("no partial row at the unindexed path: %v", rows)
	}
	for r := range rows {
		if strings.HasPrefix(r.path, result) && r.path != result {
			t.Errorf("a row inside the unindexed path: %q", r.path)
		}
	}
	deep := strings.Repeat(`{"a":`, 20000) + "1" + strings.Repeat("}", 20000)
	checkScanBody(t, []byte(deep))
}

func FuzzScanBodyAgrees(f *testing.F) {
	for _, seed := range scanSeeds {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, raw []byte) { checkScanBody(t, raw) })
}

// testUnsearched are WithUnsearched paths (and WithUnindexed ones) that
// the seeds have values at.
var testUnsearched = func() unindexedPaths {
	var o options
	WithUnindexed("attributes.cmbs.message.result", "mixins")(&o)
	WithUnsearched("a", "t", "k", "attributes.cmbs.message.cmbs_layer", "attributes.cmbs.message.path_history")(&o)
	return o.unindexed
}()

// testUnindexed are WithUnindexed paths that the seeds have values at.
var testUnindexed = func() unindexedPaths {
	var o options
	WithUnindexed("attributes.cmbs.message.result", "a.b", "mixins")(&o)
	return o.unindexed
}()

// checkScanBody checks raw with every path indexed and with testUnindexed.
func checkScanBody(t *testing.T, raw []byte) {
	t.Helper()
	checkScanBodySkip(t, raw, nil)
	checkScanBodySkip(t, raw, testUnindexed)
	checkScanBodySkip(t, raw, testUnsearched)
}

func checkScanBodySkip(t *testing.T, raw []byte, skip unindexedPaths) {
	t.Helper()
	body, rows, ok := scanBody(raw, skip)
	wantBody, wantRows, err := slowBody(raw, skip)
	if !ok {
		return // the caller decodes: same result by construction
	}
	if err != nil {
		t.Fatalf("%q: scanned, but decoding refuses it: %v", raw, err)
	}
	if !bytes.Equal(body, wantBody) {
		t.Fatalf("%q: body %q, decoding gives %q", raw, body, wantBody)
	}
	if !maps.Equal(rows, wantRows) {
		t.Fatalf("%q: rows %v, decoding gives %v", raw, rows, wantRows)
	}
	if _, stored, ok := scanBody(wantBody, skip); !ok || !maps.Equal(stored, wantRows) {
		t.Fatalf("%q: rows of the stored body %v (ok %v), want %v", wantBody, stored, ok, wantRows)
	}
}

// benchBody is a message entity with a ten-delivery send result, as the
// fan-out stores after every send.
func benchBody() []byte {
	var b strings.Builder
	b.WriteString(`{"type":"entity","kind":"http://houssem.org/cmbs#message","mixins":["http://houssem.org/cmbs#l2"],"location":"/cmbs/message/m-000123","attributes":{"cmbs":{"message":{"cmbs_layer":"l2","executable":"false","sendable":"true","storable":"false","message_content":{"text":"` + strings.Repeat("x", 64) + `"},"path_history":["tcp://127.0.0.1:40000/cmbs/member/s"],"result":{"message":"/cmbs/message/m-000123","layer":"l2","sender":"/cmbs/member/s","delivered":10,"failed":0,"deliveries":[`)
	for i := range 10 {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`{"delivered":true,"member":"/cmbs/member/r0` + string(rune('0'+i)) + `-127.0.0.1-40001","socket":"tcp://127.0.0.1:4000` + string(rune('0'+i)) + `","ack":{"member":"tcp://127.0.0.1:4000` + string(rune('0'+i)) + `/cmbs/member/r0` + string(rune('0'+i)) + `","layer":"l2"}}`)
	}
	b.WriteString(`]}}}},"title":"","summary":"","links":[],"actions":[]}`)
	return []byte(b.String())
}

func BenchmarkScanBody(b *testing.B) {
	raw := benchBody()
	b.SetBytes(int64(len(raw)))
	b.Run("scan", func(b *testing.B) {
		for b.Loop() {
			if _, _, ok := scanBody(raw, nil); !ok {
				b.Fatal("fell back")
			}
		}
	})
	b.Run("decode", func(b *testing.B) {
		for b.Loop() {
			if _, _, err := slowBody(raw, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}
