package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// trInput is the bytes benchTr pipes through tr; the process phase's
// server and provider are sized for it.
const trInput = 10 << 20

// benchTr pipes 10 MiB through tr -d x three ways, alternating, -runs
// rounds: a streamed execute (the body in, the output back as it is
// written: how a user pipes bytes through the server, curl --data-binary),
// execute with the seed's JSON shape (input in an attribute, output in the
// result; information), and os/exec directly (bytes in, a buffer out).
// tr_throughput_vs_raw (goal ≥ 0.8) is the best streamed run over the best
// raw one; tr_json_throughput_vs_raw likewise for JSON.
func benchTr(ctx context.Context, cfg config, b *benchServer, loc string, execute func(context.Context, string, []byte) error,
	raw func(context.Context, []byte, string, ...string) ([]byte, error), out func(string, ...any), results map[string]any) error {
	input := bytes.Repeat([]byte("the quick brown fox jumps over the lazy dog x\n"), trInput/46+1)[:trInput]
	wantOut := int64(len(bytes.ReplaceAll(input, []byte("x"), nil)))
	body, _ := json.Marshal(map[string]any{"attributes": map[string]any{"input": string(input)}})
	rounds := cfg.runs
	mibs := func(d time.Duration) float64 { return float64(trInput) / (1 << 20) / d.Seconds() }
	streamed, viaJSON, direct := rateRuns(), rateRuns(), rateRuns()
	for range rounds {
		start := time.Now()
		if err := b.stream(ctx, loc, input, wantOut); err != nil {
			return err
		}
		streamed.add(mibs(time.Since(start)))
		start = time.Now()
		if err := execute(ctx, loc, body); err != nil {
			return err
		}
		viaJSON.add(mibs(time.Since(start)))
		start = time.Now()
		if _, err := raw(ctx, input, "/usr/bin/tr", "-d", "x"); err != nil {
			return err
		}
		direct.add(mibs(time.Since(start)))
	}
	ratio := streamed.best() / direct.best()
	jsonRatio := viaJSON.best() / direct.best()
	streamed.record(results, "tr_10mib_mib_per_s")
	viaJSON.record(results, "tr_json_10mib_mib_per_s")
	direct.record(results, "tr_10mib_raw_mib_per_s")
	results["tr_throughput_vs_raw"] = round2(ratio)
	results["tr_throughput_vs_raw_spread"] = pairedRatios(streamed, direct).spread()
	results["tr_json_throughput_vs_raw"] = round2(jsonRatio)
	results["tr_json_throughput_vs_raw_spread"] = pairedRatios(viaJSON, direct).spread()
	out("   tr -d x over 10 MiB, %d alternating rounds (MiB/s %s):", rounds, "min/median/max")
	out("     streamed execute %s; JSON execute %s; piped through tr %s", streamed, viaJSON, direct)
	out("     streamed/raw %.2f best over best (goal ≥ 0.8; per round %s); JSON/raw %.2f (information; per round %s)",
		ratio, pairedRatios(streamed, direct), jsonRatio, pairedRatios(viaJSON, direct))
	return nil
}

// stream is a streamed execute of the definition at loc with input as the
// body, read into one buffer of the expected size (as the raw baseline's
// buffer is not handicapped either); the trailers must say succeeded with
// wantOut bytes of output.
func (b *benchServer) stream(ctx context.Context, loc string, input []byte, wantOut int64) error {
	req, err := http.NewRequestWithContext(ctx, "POST", b.url+loc+"?action=execute", bytes.NewReader(input))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("Accept", "application/octet-stream")
	resp, err := b.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	buf := bytes.NewBuffer(make([]byte, 0, wantOut+bytes.MinRead))
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("streamed execute %s: status %d: %.300s", loc, resp.StatusCode, buf.Bytes())
	}
	if st, size := resp.Trailer.Get("X-Process-Status"), resp.Trailer.Get("X-Process-Output-Size"); st != "succeeded" ||
		size != strconv.FormatInt(wantOut, 10) || int64(buf.Len()) != wantOut {
		return fmt.Errorf("streamed execute %s: status %q, output %s bytes (read %d), want %d", loc, st, size, buf.Len(), wantOut)
	}
	return nil
}
