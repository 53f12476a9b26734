package transport

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func frames(ss ...string) [][]byte {
	out := make([][]byte, len(ss))
	for i, s := range ss {
		out[i] = []byte(s)
	}
	return out
}

func TestParse(t *testing.T) {
	allBytes := make([]byte, 256)
	for i := range allBytes {
		allBytes[i] = byte(i)
	}
	big := bytes.Repeat([]byte("x"), 4<<20)

	tests := []struct {
		name    string
		in      [][]byte
		want    Envelope
		wantErr string // substring; "" means success
	}{
		// dploy's golden vectors (its DP-1 and DP-2 frames).
		{name: "bare", in: frames("id", "mimetype", "data"),
			want: Envelope{ID: "id", MimeType: "mimetype", Body: []byte("data")}},
		{name: "routed", in: frames("a", "b", "c", "", "id", "mimetype", "data"),
			want: Envelope{Routing: frames("a", "b", "c"), ID: "id", MimeType: "mimetype", Body: []byte("data")}},
		{name: "delimiter without routing", in: frames("", "id", "m", "b"),
			want: Envelope{ID: "id", MimeType: "m", Body: []byte("b")}},
		{name: "one routing frame", in: frames("peer", "", "id", "application/occi+json", "{}"),
			want: Envelope{Routing: frames("peer"), ID: "id", MimeType: "application/occi+json", Body: []byte("{}")}},
		{name: "empty body", in: frames("id", "text/plain", ""),
			want: Envelope{ID: "id", MimeType: "text/plain", Body: []byte{}}},
		{name: "binary body", in: [][]byte{[]byte("id"), []byte("application/octet-stream"), allBytes},
			want: Envelope{ID: "id", MimeType: "application/octet-stream", Body: allBytes}},
		{name: "non-ASCII id", in: frames("идентификатор-✓", "text/plain", "x"),
			want: Envelope{ID: "идентификатор-✓", MimeType: "text/plain", Body: []byte("x")}},
		{name: "4 MiB body", in: [][]byte{[]byte("id"), []byte("text/plain"), big},
			want: Envelope{ID: "id", MimeType: "text/plain", Body: big}},

		// Malformed (DP-6 and the brief's list).
		{name: "no frames", in: nil, wantErr: "0 frames, need at least 3"},
		{name: "one frame", in: frames("x"), wantErr: "1 frames"},
		{name: "two frames", in: frames("x", "y"), wantErr: "2 frames"},
		{name: "four frames without delimiter", in: frames("r", "id", "m", "b"), wantErr: "4 frames: expected an empty delimiter"},
		{name: "non-empty delimiter", in: frames("r", "NOTEMPTY", "id", "m", "b"), wantErr: "frame 1 of 5 must be the empty delimiter"},
		{name: "empty id", in: frames("", "text/plain", "x"), wantErr: "empty id"},
		{name: "empty id routed", in: frames("r", "", "", "text/plain", "x"), wantErr: "empty id"},
		{name: "empty mimetype", in: frames("id", "", "x"), wantErr: "empty mimetype"},
		{name: "invalid UTF-8 id", in: [][]byte{{0xff, 0xfe}, []byte("m"), nil}, wantErr: "id is not valid UTF-8"},
		{name: "invalid UTF-8 mimetype", in: [][]byte{[]byte("id"), {0xc3, 0x28}, nil}, wantErr: "mimetype is not valid UTF-8"},
		{name: "control char in mimetype", in: frames("id", "text/plain\n", "x"), wantErr: "control character"},
		{name: "empty routing frame", in: frames("a", "", "", "id", "m", "b"), wantErr: "routing frame 1 is empty"},
		{name: "oversize id", in: frames(strings.Repeat("i", MaxIDSize+1), "m", "b"), wantErr: "id is 1025 bytes"},
		{name: "oversize mimetype", in: frames("id", strings.Repeat("m", MaxMimeTypeSize+1), "b"), wantErr: "mimetype is 256 bytes"},
		{name: "oversize body", in: [][]byte{[]byte("id"), []byte("m"), make([]byte, MaxBodySize+1)}, wantErr: "body is 16777217 bytes"},
		{name: "oversize routing frame", in: frames(strings.Repeat("r", MaxRoutingFrameSize+1), "", "id", "m", "b"), wantErr: "routing frame 0 is 256 bytes"},
		{name: "too many routing frames", in: append(frames(strings.Split(strings.Repeat("r,", MaxRoutingFrames+1), ",")[:MaxRoutingFrames+1]...), frames("", "id", "m", "b")...), wantErr: "33 routing frames"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.in)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("Parse = %+v, want error containing %q", got, tt.wantErr)
				}
				if !errors.Is(err, ErrMalformedEnvelope) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse error = %q, want ErrMalformedEnvelope containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Parse = %+v, want %+v", got, tt.want)
			}
			back, err := Parse(got.Frames())
			if err != nil || !reflect.DeepEqual(back, got) {
				t.Fatalf("Parse(Frames()) = %+v, %v; want %+v", back, err, got)
			}
		})
	}
}

func TestFramesAndReply(t *testing.T) {
	// DP-3 and DP-4.
	e := Envelope{ID: "id", MimeType: "mimetype", Body: []byte("data")}
	if got, want := e.Frames(), frames("id", "mimetype", "data"); !reflect.DeepEqual(got, want) {
		t.Errorf("Frames = %q, want %q", got, want)
	}
	e.Routing = frames("a", "b", "c")
	want := [][]byte{[]byte("a"), []byte("b"), []byte("c"), nil, []byte("id"), []byte("mimetype"), []byte("data")}
	if got := e.Frames(); !reflect.DeepEqual(got, want) {
		t.Errorf("routed Frames = %q, want %q", got, want)
	}
	r := e.Reply("newmime", []byte("newdata"))
	want = [][]byte{[]byte("a"), []byte("b"), []byte("c"), nil, []byte("id"), []byte("newmime"), []byte("newdata")}
	if got := r.Frames(); !reflect.DeepEqual(got, want) {
		t.Errorf("Reply Frames = %q, want %q", got, want)
	}
}

// decodeFrames turns fuzz bytes into frames: each frame is a length byte
// followed by that many bytes (fewer if data runs out).
func decodeFrames(data []byte) [][]byte {
	var out [][]byte
	for len(data) > 0 {
		n := min(int(data[0]), len(data)-1)
		out = append(out, data[1:1+n])
		data = data[1+n:]
	}
	return out
}

func encodeFrames(fs ...string) []byte {
	var b []byte
	for _, f := range fs {
		b = append(b, byte(len(f)))
		b = append(b, f...)
	}
	return b
}

func FuzzParse(f *testing.F) {
	f.Add(encodeFrames("id", "mimetype", "data"))
	f.Add(encodeFrames("a", "b", "c", "", "id", "mimetype", "data"))
	f.Add(encodeFrames("", "id", "m", "b"))
	f.Add(encodeFrames("r", "id", "m", "b"))
	f.Add(encodeFrames("r", "x", "id", "m", "b"))
	f.Add(encodeFrames("", "text/plain", "x"))
	f.Add(encodeFrames("\xff", "m", ""))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		in := decodeFrames(data)
		env, err := Parse(in)
		if err != nil {
			if !errors.Is(err, ErrMalformedEnvelope) {
				t.Fatalf("error %v does not wrap ErrMalformedEnvelope", err)
			}
			return
		}
		if err := env.Validate(); err != nil {
			t.Fatalf("Parse returned an envelope that does not validate: %v", err)
		}
		out := env.Frames()
		back, err := Parse(out)
		if err != nil {
			t.Fatalf("Parse(Frames(%+v)): %v", env, err)
		}
		if !reflect.DeepEqual(normalise(back), normalise(env)) {
			t.Fatalf("round trip: got %+v, want %+v", back, env)
		}
		// Frames reproduces the input, except that a delimiter with no
		// routing before it is not rendered.
		if len(in) == 4 {
			in = in[1:]
		}
		if !reflect.DeepEqual(normaliseFrames(out), normaliseFrames(in)) {
			t.Fatalf("Frames = %q, input was %q", out, in)
		}
	})
}

// normalise makes nil and empty byte slices compare equal.
func normalise(e Envelope) Envelope {
	e.Routing = normaliseFrames(e.Routing)
	if e.Body == nil {
		e.Body = []byte{}
	}
	return e
}

func normaliseFrames(fs [][]byte) [][]byte {
	if len(fs) == 0 {
		return nil
	}
	out := make([][]byte, len(fs))
	for i, f := range fs {
		if f == nil {
			f = []byte{}
		}
		out[i] = f
	}
	return out
}
