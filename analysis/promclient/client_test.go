package promclient

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	promapi "github.com/prometheus/client_golang/api"

	"github.com/fledgehq/fledge/analysis"
)

const testQuery = `sum(rate(istio_requests_total{destination_workload="podinfo-canary"}[1m]))`

// prometheusAnswering is a Prometheus whose /api/v1/query answers with
// status and body, and checks that it was asked testQuery at at.
func prometheusAnswering(t *testing.T, at time.Time, status int, body string) *Client {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/query" {
			t.Errorf("request to %s, want /api/v1/query", r.URL.Path)
		}
		if err := r.ParseForm(); err != nil {
			t.Errorf("parse form: %v", err)
		}
		wantTime := fmt.Sprint(at.Unix())
		if got := r.Form.Get("query"); got != testQuery {
			t.Errorf("query = %q, want %q", got, testQuery)
		}
		if got := r.Form.Get("time"); got != wantTime {
			t.Errorf("time = %q, want %q", got, wantTime)
		}
		if got := r.Form.Get("timeout"); got != "5s" {
			t.Errorf("timeout = %q, want Prometheus told the query's limit, 5s", got)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		fmt.Fprint(w, body)
	}))
	t.Cleanup(srv.Close)
	return newTestPrometheus(t, srv.URL, 5*time.Second)
}

func newTestPrometheus(t *testing.T, address string, timeout time.Duration) *Client {
	t.Helper()
	p, err := New(promapi.Config{Address: address}, timeout)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// vector is a success response holding an instant vector.
func vector(samples ...string) string {
	return `{"status":"success","data":{"resultType":"vector","result":[` + strings.Join(samples, ",") + `]}}`
}

func TestPrometheusQuery(t *testing.T) {
	at := time.Unix(1_700_000_000, 0)
	const one = `{"metric":{},"value":[1700000000,"0.995"]}`
	for _, tc := range []struct {
		name    string
		status  int
		body    string
		want    float64
		wantErr error  // nil for success
		wantMsg string // the whole error, which names the query
	}{
		{name: "returns the value of a single sample", status: 200, body: vector(one), want: 0.995},
		{name: "returns zero when Prometheus measured zero", status: 200, body: vector(`{"metric":{},"value":[1700000000,"0"]}`), want: 0},
		{"fails with no data on an empty result", 200, vector(), 0, analysis.ErrNoData,
			"no data: the query returned no series"},
		{"fails on NaN", 200, vector(`{"metric":{},"value":[1700000000,"NaN"]}`), 0, analysis.ErrNaN,
			"the value is NaN"},
		{"fails on +Inf", 200, vector(`{"metric":{},"value":[1700000000,"+Inf"]}`), 0, analysis.ErrInfinite,
			"the value is infinite: +Inf"},
		{"fails on -Inf", 200, vector(`{"metric":{},"value":[1700000000,"-Inf"]}`), 0, analysis.ErrInfinite,
			"the value is infinite: -Inf"},
		{"fails on two series, naming them", 200,
			vector(`{"metric":{"destination_workload":"a"},"value":[1700000000,"1"]}`, `{"metric":{"destination_workload":"b"},"value":[1700000000,"2"]}`),
			0, analysis.ErrManySeries, `more than one series: 2 series, want 1: {destination_workload="a"}, {destination_workload="b"}`},
		{"fails on a matrix", 200, `{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1700000000,"1"]]}]}}`,
			0, analysis.ErrWrongType, "wrong result type: a matrix, want an instant vector"},
		{"fails on a scalar", 200, `{"status":"success","data":{"resultType":"scalar","result":[1700000000,"1"]}}`,
			0, analysis.ErrWrongType, "wrong result type: a scalar, want an instant vector"},
		{"fails on a native histogram sample", 200,
			vector(`{"metric":{"le":"x"},"histogram":[1700000000,{"count":"1","sum":"1","buckets":[[0,"0","1","1"]]}]}`),
			0, analysis.ErrWrongType, `wrong result type: {le="x"} is a native histogram, want a float`},
		{"fails on warnings, which may mean a partial result", 200,
			`{"status":"success","warnings":["remote read failed"],"data":{"resultType":"vector","result":[` + one + `]}}`,
			0, analysis.ErrWarnings, "prometheus returned warnings: remote read failed"},
		{"fails when Prometheus refuses the query", 400,
			`{"status":"error","errorType":"bad_data","error":"1:5: parse error: unexpected end of input"}`,
			0, analysis.ErrQueryFailed, "prometheus answered with an error: bad_data: 1:5: parse error: unexpected end of input"},
		{"fails when Prometheus cannot execute the query", 422,
			`{"status":"error","errorType":"execution","error":"query processing would load too many samples"}`,
			0, analysis.ErrQueryFailed, "prometheus answered with an error: execution: query processing would load too many samples"},
		{"fails on a server error", 500, "boom\n", 0, analysis.ErrQueryFailed,
			"prometheus answered with an error: server_error: server error: 500: boom"},
		{"fails with a timeout when Prometheus gives up on the query", 503,
			`{"status":"error","errorType":"timeout","error":"query timed out in expression evaluation"}`,
			0, analysis.ErrTimeout, "query timed out: timeout: query timed out in expression evaluation"},
		{"fails on an answer that is not Prometheus's", 200, `<html>login</html>`, 0, analysis.ErrBadResponse, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := prometheusAnswering(t, at, tc.status, tc.body)
			got, err := p.Query(context.Background(), testQuery, at)
			if tc.wantErr == nil {
				if err != nil || got != tc.want {
					t.Fatalf("Query = %v, %v; want %v", got, err, tc.want)
				}
				return
			}
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Query = %v, %v; want an error wrapping %q", got, err, tc.wantErr)
			}
			prefix := fmt.Sprintf("query %q: ", testQuery)
			if tc.wantMsg != "" && err.Error() != prefix+tc.wantMsg {
				t.Errorf("error:\n got %s\nwant %s", err, prefix+tc.wantMsg)
			}
			if !strings.HasPrefix(err.Error(), prefix) {
				t.Errorf("error %q does not name the query", err)
			}
		})
	}
}

func TestPrometheusQueryWhenUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	address := srv.URL
	srv.Close() // nothing listens there any more
	_, err := newTestPrometheus(t, address, time.Second).Query(context.Background(), testQuery, time.Now())
	if !errors.Is(err, analysis.ErrUnreachable) || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("Query against a closed port: %v; want ErrUnreachable wrapping connection refused", err)
	}
	if !strings.Contains(err.Error(), "prometheus cannot be reached") || !strings.Contains(err.Error(), address) {
		t.Errorf("error %q should say Prometheus cannot be reached, and where", err)
	}
}

// slowPrometheus never answers. Its handlers are released when the test
// ends: the server notices a client leaving only once it has read the
// request's body, which a stuck Prometheus may never do.
func slowPrometheus(t *testing.T) string {
	t.Helper()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) }) // runs first
	return srv.URL
}

func TestPrometheusQueryTimesOut(t *testing.T) {
	p := newTestPrometheus(t, slowPrometheus(t), 50*time.Millisecond)
	start := time.Now()
	_, err := p.Query(context.Background(), testQuery, time.Now())
	if !errors.Is(err, analysis.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Query of a stuck Prometheus: %v; want ErrTimeout", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the query took %s to time out after 50ms", took)
	}
}

func TestPrometheusQueryHonoursTheCallersContext(t *testing.T) {
	p := newTestPrometheus(t, slowPrometheus(t), time.Minute)

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := p.Query(ctx, testQuery, time.Now()); !errors.Is(err, analysis.ErrTimeout) {
		t.Errorf("Query past the caller's deadline: %v; want ErrTimeout", err)
	}

	ctx, cancel = context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	_, err := p.Query(ctx, testQuery, time.Now())
	if !errors.Is(err, context.Canceled) || errors.Is(err, analysis.ErrTimeout) || errors.Is(err, analysis.ErrUnreachable) {
		t.Errorf("Query canceled by the caller: %v; want context.Canceled, neither a timeout nor an outage", err)
	}
}

func TestNewRefusesABadAddress(t *testing.T) {
	for _, address := range []string{"", "prometheus:9090", "ftp://prometheus", "http://"} {
		if _, err := New(promapi.Config{Address: address}, 0); err == nil {
			t.Errorf("New(%q) accepted it", address)
		}
	}
	if _, err := New(promapi.Config{Address: "http://prometheus:9090"}, -time.Second); err == nil {
		t.Error("New accepted a negative timeout")
	}
	p, err := New(promapi.Config{Address: "http://prometheus:9090"}, 0)
	if err != nil || p.timeout != DefaultQueryTimeout {
		t.Errorf("New with no timeout: %v, timeout %v; want %s", err, p, DefaultQueryTimeout)
	}
}
