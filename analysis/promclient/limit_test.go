package promclient

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	promapi "github.com/prometheus/client_golang/api"

	"github.com/fledgehq/fledge/analysis"
)

// hugeVector is a valid instant-vector answer of at least size bytes: many
// series, as a query that forgot its sum() over a big fleet returns.
func hugeVector(size int) []byte {
	var b bytes.Buffer
	b.Grow(size + 1024)
	b.WriteString(`{"status":"success","data":{"resultType":"vector","result":[`)
	for i := 0; b.Len() < size; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"metric":{"__name__":"istio_requests_total","destination_workload":"podinfo-canary","pod":"podinfo-canary-%09d","response_code":"200"},"value":[1700000000,"%d"]}`, i, i)
	}
	b.WriteString(`]}}`)
	return b.Bytes()
}

// prometheusAnsweringBytes is a Prometheus whose every answer is body.
func prometheusAnsweringBytes(tb testing.TB, body []byte) string {
	tb.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	}))
	tb.Cleanup(srv.Close)
	return srv.URL
}

func TestPrometheusQueryRefusesAHugeAnswer(t *testing.T) {
	address := prometheusAnsweringBytes(t, hugeVector(40<<20))
	_, err := newTestPrometheus(t, address, 30*time.Second).Query(context.Background(), testQuery, time.Now())
	if !errors.Is(err, ErrTooLarge) || !errors.Is(err, analysis.ErrBadResponse) {
		t.Fatalf("Query answered 40 MB: %v; want ErrTooLarge (an unreadable answer)", err)
	}
	for _, want := range []string{fmt.Sprintf("query %q", testQuery), "4194304 bytes"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %s", err, want)
		}
	}
}

func TestPrometheusQueryAnswerLimitIsConfigurable(t *testing.T) {
	const one = `{"metric":{},"value":[1700000000,"0.995"]}`
	address := prometheusAnsweringBytes(t, []byte(vector(one)))
	small, err := New(promapi.Config{Address: address}, time.Second, WithMaxAnswerBytes(16))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := small.Query(context.Background(), testQuery, time.Now()); !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "16 bytes") {
		t.Errorf("Query of a %d-byte answer with a 16-byte limit: %v; want ErrTooLarge naming the limit", len(vector(one)), err)
	}
	exact, err := New(promapi.Config{Address: address}, time.Second, WithMaxAnswerBytes(int64(len(vector(one)))))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := exact.Query(context.Background(), testQuery, time.Now()); err != nil || got != 0.995 {
		t.Errorf("Query of an answer exactly at the limit = %v, %v; want 0.995", got, err)
	}
	if _, err := New(promapi.Config{Address: address}, time.Second, WithMaxAnswerBytes(-1)); err == nil {
		t.Error("New accepted a negative answer limit")
	}
}

// TestTheAnswerLimitAppliesToAClientsTransport checks that a caller's own
// http.Client (TLS, credentials) is kept, and limited too.
func TestTheAnswerLimitAppliesToAClientsTransport(t *testing.T) {
	address := prometheusAnsweringBytes(t, hugeVector(64<<10))
	var used bool
	client := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		used = true
		return http.DefaultTransport.RoundTrip(r)
	})}
	p, err := New(promapi.Config{Address: address, Client: client}, time.Second, WithMaxAnswerBytes(1024))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Query(context.Background(), testQuery, time.Now()); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Query through the caller's client: %v; want ErrTooLarge", err)
	}
	if !used {
		t.Error("the caller's http.Client was not used")
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// BenchmarkHugeAnswer measures what one query answered 40 MB costs, in
// bytes allocated (the test server's, which writes a prepared body, are
// negligible). Measured here: about 508 MB without a limit (the whole
// answer decoded, to be refused as 244,501 series), about 17 MB with
// DefaultMaxAnswerBytes (client_golang's read buffer, doubling past 4 MiB).
func BenchmarkHugeAnswer(b *testing.B) {
	address := prometheusAnsweringBytes(b, hugeVector(40<<20))
	p, err := New(promapi.Config{Address: address}, time.Minute)
	if err != nil {
		b.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	for range b.N {
		p.Query(context.Background(), testQuery, time.Now())
	}
	b.StopTimer()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/float64(b.N), "bytes/query")
}
