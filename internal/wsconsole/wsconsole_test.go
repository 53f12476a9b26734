package wsconsole

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/goleak"

	"github.com/cmbs/cmbs/providers/process/supervisor"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestTail(t *testing.T) {
	for q, want := range map[string]int{"": DefaultTail, "?tail=0": 0, "?tail=7": 7, "?tail=-1": -1, "?tail=x": -1} {
		n, err := Tail(httptest.NewRequest("GET", "/c"+q, nil))
		if want < 0 {
			if err == nil {
				t.Errorf("%q: no error", q)
			}
			continue
		}
		if err != nil || n != want {
			t.Errorf("%q: %d, %v; want %d", q, n, err, want)
		}
	}
}

// serve runs Serve for log on a loopback server and dials it.
func serve(t *testing.T, log *supervisor.Log, query string) *websocket.Conn {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tail, err := Tail(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		Serve(w, r, tail, func(context.Context) (*supervisor.Log, error) { return log, nil })
	}))
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/c"+query, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
}

// A closed log's console replays the tail asked for, then closes normally.
func TestReplayThenClose(t *testing.T) {
	log := supervisor.NewLog(10, 0)
	for i := 0; i < 5; i++ {
		log.Write(fmt.Sprint(i))
	}
	log.Close()
	c := serve(t, log, "?tail=3")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var got []string
	for {
		_, b, err := c.Read(ctx)
		if err != nil {
			if st := websocket.CloseStatus(err); st != websocket.StatusNormalClosure {
				t.Fatalf("closed with %v (%v)", st, err)
			}
			break
		}
		got = append(got, string(b))
	}
	if strings.Join(got, ",") != "2,3,4" {
		t.Fatalf("replayed %q", got)
	}
}

// A client that does not read is disconnected once it lags more than
// ClientBuffer lines; writing to the log never waits for it.
func TestNonReaderDisconnected(t *testing.T) {
	log := supervisor.NewLog(10, 0)
	log.Write("hello")
	c := serve(t, log, "?tail=1")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// The replayed line comes through the subscription: it is in.
	if _, b, err := c.Read(ctx); err != nil || string(b) != "hello" {
		t.Fatalf("replay %q, %v", b, err)
	}
	pad := strings.Repeat("x", 100)
	total := ClientBuffer + 50000
	for i := 0; i < total; i++ {
		log.Write(pad)
	}
	log.Write("last")
	log.Close()
	read, sawLast := 0, false
	for {
		_, b, err := c.Read(ctx)
		if err != nil {
			if ctx.Err() != nil {
				t.Fatal("the connection was not closed")
			}
			break
		}
		read++
		sawLast = sawLast || string(b) == "last"
	}
	if sawLast || read >= total {
		t.Fatalf("the client that did not read got %d lines (last %v): it was not dropped", read, sawLast)
	}
}

func TestEntity(t *testing.T) {
	for path, want := range map[string]string{
		"/c/x/console":   "/c/x",
		"/c/x-1/console": "/c/x-1",
		"/c//console":    "",
		"/c/x/y/console": "",
		"/c/x/consoles":  "",
		"/c/x":           "",
		"/d/x/console":   "",
		"/c/console":     "",
	} {
		got, ok := Entity(path, "/c/")
		if got != want || ok != (want != "") {
			t.Errorf("Entity(%q) = %q, %v; want %q", path, got, ok, want)
		}
	}
}
