package hookclient

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/fledgehq/fledge/analysis"
	"github.com/fledgehq/fledge/webhooks"
)

var testPayload = webhooks.Payload{
	DeliveryID: "d-42", Type: webhooks.Rollout, Hook: "load", Name: "shop", Namespace: "prod",
	Revision: webhooks.Revision{Hash: "abc123", Images: []string{"shop:v2"}}, Phase: "Progressing",
	Step: 1, Steps: 3, CanaryWeight: 25,
}

// loopback lets calls reach the test servers, which listen on 127.0.0.1:
// a policy file's hookNetworks: [127.0.0.0/8].
var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}

// serve starts a test server closed with the test.
func serve(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// hang answers nothing until the client goes away. It reads the request
// body first: the server notices a closed connection only once it has.
func hang(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	<-r.Context().Done()
}

// fastClient retries without waiting, so that tests do not wait either.
func fastClient(opts ...Option) *Client {
	return New(append([]Option{WithBackoff(time.Millisecond, time.Millisecond)}, opts...)...)
}

func TestDoSendsASignedJSONPost(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	secret := []byte("s3cret")
	type seen struct {
		method string
		header http.Header
		body   []byte
	}
	got := make(chan seen, 1)
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- seen{r.Method, r.Header, b}
	})
	tests := []struct {
		name   string
		secret []byte
		signed bool
	}{
		{"signs the body with the secret and the client's clock", secret, true},
		{"leaves the call unsigned without a secret", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := New(WithNow(func() time.Time { return now }))
			res := c.Do(context.Background(), Call{Networks: loopback, URL: srv.URL + "/hook", Secret: tt.secret, Payload: testPayload})
			if res.Outcome != OK {
				t.Fatalf("Do = %s %q, want ok", res.Outcome, res.Message)
			}
			s := <-got
			if s.method != http.MethodPost {
				t.Errorf("method = %s, want POST", s.method)
			}
			for h, want := range map[string]string{
				"Content-Type": "application/json", "User-Agent": "fledge",
				webhooks.HeaderDelivery: "d-42", webhooks.HeaderType: "rollout",
			} {
				if v := s.header.Get(h); v != want {
					t.Errorf("header %s = %q, want %q", h, v, want)
				}
			}
			var p webhooks.Payload
			if err := json.Unmarshal(s.body, &p); err != nil {
				t.Fatalf("body %q: %v", s.body, err)
			}
			if d := cmp.Diff(testPayload, p); d != "" {
				t.Errorf("payload received (-sent +received):\n%s", d)
			}
			sig := s.header.Get(webhooks.HeaderSignature)
			if !tt.signed {
				if sig != "" {
					t.Fatalf("%s = %q, want none", webhooks.HeaderSignature, sig)
				}
				return
			}
			if err := webhooks.Verify(secret, sig, s.body, now, time.Minute); err != nil {
				t.Fatalf("Verify(%q) = %v, want the receiver to accept it", sig, err)
			}
		})
	}
}

func TestDoOutcomes(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		body    string
		outcome Outcome
		message string // after "POST <url>: "
	}{
		{"a 200 is ok", 200, "fine", OK, "200 OK"},
		{"a 204 with no body is ok", 204, "", OK, "204 No Content"},
		{"a 403 is rejected with the start of its body", 403, "not you\n", Rejected, "403 Forbidden: not you"},
		{"a 404 without a body is rejected with its status", 404, "", Rejected, "404 Not Found"},
		{"a 500 is rejected", 500, "boom", Rejected, "500 Internal Server Error: boom"},
		{"an unknown status is named by its code", 599, "", Rejected, "599"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tt.status)
				io.WriteString(w, tt.body)
			})
			res := New().Do(context.Background(), Call{Networks: loopback, URL: srv.URL + "/hook", Payload: testPayload})
			want := "POST " + srv.URL + "/hook: " + tt.message
			if res.Outcome != tt.outcome || res.Status != tt.status || res.Message != want {
				t.Fatalf("Do = %s %d %q, want %s %d %q", res.Outcome, res.Status, res.Message, tt.outcome, tt.status, want)
			}
			if string(res.Body) != tt.body || res.Attempts != 1 || res.Load != nil || res.Duration <= 0 {
				t.Fatalf("Do body %q, %d attempts, load %v, took %v; want body %q, 1 attempt, no load, some time", res.Body, res.Attempts, res.Load, res.Duration, tt.body)
			}
		})
	}
}

func TestDoQuotesOnlyASanitizedStartOfTheBody(t *testing.T) {
	body := "<html>\n<title>\x1b[2J502 Bad Gateway</title>\n" + strings.Repeat("padding ", 100_000)
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadGateway)
		io.WriteString(w, body)
	})
	res := New().Do(context.Background(), Call{Networks: loopback, URL: srv.URL, Payload: testPayload})
	head := "POST " + srv.URL + ": 502 Bad Gateway: "
	if !strings.HasPrefix(res.Message, head+"<html> <title> [2J502 Bad Gateway</title> padding") {
		t.Fatalf("message %q: want the body's start on one line after %q", res.Message, head)
	}
	if n := len(res.Message) - len(head); n > snippetBytes+len("...") {
		t.Fatalf("message quotes %d bytes of the body, want at most %d", n, snippetBytes)
	}
	if strings.ContainsAny(res.Message, "\n\x1b") {
		t.Fatalf("message %q: want one line, no escapes", res.Message)
	}
	if string(res.Body) != body {
		t.Fatalf("Body has %d bytes, want the whole %d-byte body", len(res.Body), len(body))
	}
}

// step is what a test server answers to one attempt; status 0 drops the
// connection without answering.
type step struct {
	status int
	body   string
}

// scripted answers the steps in order, the last one again and again, and
// counts the requests it gets.
func scripted(t *testing.T, steps []step) (*httptest.Server, *atomic.Int32) {
	var hits atomic.Int32
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		n := int(hits.Add(1)) - 1
		s := steps[min(n, len(steps)-1)]
		if s.status == 0 {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
		w.WriteHeader(s.status)
		io.WriteString(w, s.body)
	})
	return srv, &hits
}

func TestDoRetries(t *testing.T) {
	tests := []struct {
		name     string
		steps    []step
		retries  int
		outcome  Outcome
		attempts int
		suffix   string // the message's end
	}{
		{"retries a 503 until it passes", []step{{503, ""}, {503, ""}, {200, ""}}, 2, OK, 3, "200 OK (3 attempts)"},
		{"gives up after its retries and says how many attempts it made", []step{{503, "busy"}}, 2, Rejected, 3, "503 Service Unavailable: busy (3 attempts)"},
		{"retries a 429", []step{{429, ""}, {200, ""}}, 1, OK, 2, "200 OK (2 attempts)"},
		{"retries a dropped connection", []step{{0, ""}, {200, ""}}, 1, OK, 2, "200 OK (2 attempts)"},
		{"never retries a 4xx", []step{{404, ""}, {200, ""}}, 3, Rejected, 1, "404 Not Found"},
		{"never retries a malformed load result", []step{{200, `{"requests": "many"}`}, {200, ""}}, 3, Error, 1, "want a count"},
		{"makes one attempt without retries", []step{{503, ""}, {200, ""}}, 0, Rejected, 1, "503 Service Unavailable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, hits := scripted(t, tt.steps)
			res := fastClient().Do(context.Background(), Call{Networks: loopback, URL: srv.URL, Retries: tt.retries, Payload: testPayload})
			if res.Outcome != tt.outcome || res.Attempts != tt.attempts || !strings.HasSuffix(res.Message, tt.suffix) {
				t.Fatalf("Do = %s after %d attempts %q, want %s after %d attempts, ending %q",
					res.Outcome, res.Attempts, res.Message, tt.outcome, tt.attempts, tt.suffix)
			}
			if int(hits.Load()) != tt.attempts {
				t.Fatalf("server got %d requests, want %d", hits.Load(), tt.attempts)
			}
		})
	}
}

func TestDoRetriesAConnectionRefused(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	res := fastClient().Do(context.Background(), Call{Networks: loopback, URL: "http://" + addr + "/hook", Retries: 2, Payload: testPayload})
	if res.Outcome != Error || res.Attempts != 3 || res.Status != 0 || !strings.Contains(res.Message, "connection refused") {
		t.Fatalf("Do = %s %d after %d attempts %q, want an error naming the refused connection after 3 attempts",
			res.Outcome, res.Status, res.Attempts, res.Message)
	}
}

func TestDoStopsRetryingWhenTheContextEnds(t *testing.T) {
	srv, hits := scripted(t, []step{{503, ""}})
	// The backoff is far longer than the caller's deadline: Do must give
	// up when the deadline passes rather than wait it out (the test would
	// hang).
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	res := New(WithBackoff(time.Hour, time.Hour)).Do(ctx, Call{Networks: loopback, URL: srv.URL, Retries: 5, Payload: testPayload})
	want := "POST " + srv.URL + ": 503 Service Unavailable (1 attempt; gave up retrying: context deadline exceeded)"
	if res.Outcome != Rejected || res.Attempts != 1 || res.Message != want || hits.Load() != 1 {
		t.Fatalf("Do = %s after %d attempts %q, want the 503 after 1 attempt, %q", res.Outcome, res.Attempts, res.Message, want)
	}
}

func TestDoTimesOut(t *testing.T) {
	tests := []struct {
		name    string
		handler http.HandlerFunc
		ctx     func() context.Context
		status  int
		message string // after "POST <url>: "
	}{
		{"gives up on a server that never answers", hang, context.Background, 0, "timed out after 200ms"},
		{"gives up on a body that never ends", func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			io.WriteString(w, `{"requests": `)
			http.NewResponseController(w).Flush()
			<-r.Context().Done()
		}, context.Background, 200, "200 OK: reading body: timed out after 200ms"},
		{"makes no call once the caller's context has ended", hang, func() context.Context {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx
		}, 0, "stopped: context canceled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := serve(t, tt.handler)
			res := New().Do(tt.ctx(), Call{Networks: loopback, URL: srv.URL, Timeout: 200 * time.Millisecond, Payload: testPayload})
			want := "POST " + srv.URL + ": " + tt.message
			if res.Outcome != Error || res.Status != tt.status || res.Message != want {
				t.Fatalf("Do = %s %d %q, want error %d %q", res.Outcome, res.Status, res.Message, tt.status, want)
			}
		})
	}
}

func TestDoCapsTheBody(t *testing.T) {
	const limit = 1024
	tests := []struct {
		name    string
		handler http.HandlerFunc
		outcome Outcome
		message string // part of the message
		body    int    // length of Result.Body
	}{
		{"reads a body of exactly the limit", func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, strings.Repeat("x", limit))
		}, OK, "200 OK", limit},
		{"refuses a body one byte over the limit", func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, strings.Repeat("x", limit+1))
		}, Error, "200 OK: response body larger than 1 KiB", 0},
		{"refuses a declared length over the limit without reading the body", func(w http.ResponseWriter, r *http.Request) {
			// Were the body read, the read would hang until the timeout.
			io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Length", "104857600")
			io.WriteString(w, "xxxx")
			http.NewResponseController(w).Flush()
			<-r.Context().Done()
		}, Error, "200 OK: response body larger than 1 KiB", 0},
		{"applies the limit to rejections too", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusForbidden)
			io.WriteString(w, strings.Repeat("x", limit+1))
		}, Error, "403 Forbidden: response body larger than 1 KiB", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := serve(t, tt.handler)
			res := New(WithMaxBody(limit)).Do(context.Background(), Call{Networks: loopback, URL: srv.URL, Timeout: 10 * time.Second, Payload: testPayload})
			if res.Outcome != tt.outcome || !strings.Contains(res.Message, tt.message) || len(res.Body) != tt.body {
				t.Fatalf("Do = %s %q with %d body bytes, want %s %q with %d", res.Outcome, res.Message, len(res.Body), tt.outcome, tt.message, tt.body)
			}
		})
	}
}

func TestDoDoesNotReadAHugeBody(t *testing.T) {
	const huge = 100 << 20
	written := make(chan int, 1)
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		chunk := make([]byte, 32<<10)
		n := 0
		for n < huge {
			m, err := w.Write(chunk)
			n += m
			if err != nil {
				break
			}
		}
		written <- n
	})
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	res := New().Do(context.Background(), Call{Networks: loopback, URL: srv.URL, Timeout: time.Minute, Payload: testPayload})
	runtime.ReadMemStats(&after)
	if res.Outcome != Error || res.Message != "POST "+srv.URL+": 200 OK: response body larger than 1 MiB" || res.Body != nil {
		t.Fatalf("Do = %s %q with %d body bytes, want the body refused as larger than 1 MiB", res.Outcome, res.Message, len(res.Body))
	}
	if n := <-written; n >= huge {
		t.Fatalf("server wrote all %d bytes: the client read the whole body", n)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 32<<20 {
		t.Fatalf("the call allocated %d MiB, want a few: the body was held in memory", alloc>>20)
	}
}

func TestDoReadsLoadResults(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		body    string
		outcome Outcome
		load    *webhooks.LoadResult
		message string // part of the message
	}{
		{"reads a load result", 200,
			`{"requests": 1200, "success": 0.995, "p50Ms": 12, "p95Ms": 80.5, "p99Ms": 120, "durationSeconds": 30, "errors": ["503 x6"], "tester": "v1"}`,
			OK, &webhooks.LoadResult{LoadFigures: webhooks.LoadFigures{Requests: 1200, Success: 0.995, P50Ms: 12, P95Ms: 80.5, P99Ms: 120, Duration: 30, Errors: []string{"503 x6"}}},
			"200 OK: load result: 1200 requests, 99.50% success, p95 80.5ms"},
		{"reads the stable side of a run that loaded both", 200,
			`{"requests": 100, "success": 0.9, "p95Ms": 50, "stable": {"requests": 100, "success": 0.99, "p95Ms": 40}}`,
			OK, &webhooks.LoadResult{LoadFigures: webhooks.LoadFigures{Requests: 100, Success: 0.9, P95Ms: 50}, Stable: &webhooks.LoadFigures{Requests: 100, Success: 0.99, P95Ms: 40}},
			"load result: 100 requests, 90.00% success, p95 50ms; stable: 100 requests, 99.00% success, p95 40ms"},
		{"refuses impossible figures of the stable side", 200, `{"requests": 10, "success": 1, "stable": {"requests": 10, "success": 2}}`, Error, nil, "stable: success is 2, want a ratio between 0 and 1"},
		{"reads a run of no requests as such", 200, `{"requests": 0}`, OK, &webhooks.LoadResult{}, "load result: 0 requests"},
		{"takes an empty body as no load result", 200, "", OK, nil, "200 OK"},
		{"takes text as no load result", 200, "accepted", OK, nil, "200 OK"},
		{"takes other JSON as no load result", 200, `{"status": "ok"}`, OK, nil, "200 OK"},
		{"takes a JSON array as no load result", 200, `[1, 2]`, OK, nil, "200 OK"},
		{"takes broken JSON that does not claim to be one as no load result", 200, `{"status": `, OK, nil, "200 OK"},
		{"refuses a count that is a string", 200, `{"requests": "many"}`, Error, nil, `200 OK: not a valid load result: requests is "many", want a count`},
		{"refuses a null count", 200, `{"requests": null}`, Error, nil, "requests is null, want a count"},
		{"refuses a negative count", 200, `{"requests": -5}`, Error, nil, "requests is -5, want a count"},
		{"refuses a success ratio above 1", 200, `{"requests": 10, "success": 99.5}`, Error, nil, "success is 99.5, want a ratio between 0 and 1"},
		{"refuses a negative latency", 200, `{"requests": 10, "success": 1, "p95Ms": -1}`, Error, nil, "p95Ms is -1, want 0 or more"},
		{"refuses a field of the wrong type", 200, `{"requests": 10, "success": "high"}`, Error, nil, "not a valid load result"},
		{"refuses a truncated load result", 200, `{"requests": 10, "succ`, Error, nil, "not a valid load result: malformed JSON"},
		{"reads no load result from a rejection", 500, `{"requests": 10, "success": 0.2}`, Rejected, nil, "500 Internal Server Error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tt.status)
				io.WriteString(w, tt.body)
			})
			res := New().Do(context.Background(), Call{Networks: loopback, URL: srv.URL, Payload: testPayload})
			if res.Outcome != tt.outcome || !strings.Contains(res.Message, tt.message) {
				t.Fatalf("Do = %s %q, want %s %q", res.Outcome, res.Message, tt.outcome, tt.message)
			}
			if d := cmp.Diff(tt.load, res.Load); d != "" {
				t.Fatalf("Load (-want +got):\n%s", d)
			}
		})
	}
}

func TestDoBoundsWhatALoadResultCarries(t *testing.T) {
	errs := make([]string, 50)
	for i := range errs {
		errs[i] = "line one\nline two " + strings.Repeat("x", 1000)
	}
	b, _ := json.Marshal(map[string]any{"requests": 10, "success": 0.5, "errors": errs})
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) { w.Write(b) })
	res := New().Do(context.Background(), Call{Networks: loopback, URL: srv.URL, Payload: testPayload})
	if res.Outcome != OK || res.Load == nil {
		t.Fatalf("Do = %s %q, want ok with a load result", res.Outcome, res.Message)
	}
	if len(res.Load.Errors) != maxLoadErrors {
		t.Fatalf("load result kept %d errors, want %d", len(res.Load.Errors), maxLoadErrors)
	}
	for _, e := range res.Load.Errors {
		if len(e) > loadErrorLength+len("...") || strings.Contains(e, "\n") {
			t.Fatalf("load error %q: want one line of at most %d bytes", e, loadErrorLength)
		}
	}
}

func TestDoRefusesInvalidCalls(t *testing.T) {
	nan := math.NaN()
	tests := []struct {
		name    string
		url     string
		payload webhooks.Payload
		message string
	}{
		{"refuses another scheme", "ftp://hooks.example/x", testPayload, `hook URL ftp://hooks.example/x refused: scheme "ftp" is not http or https`},
		{"refuses a file URL", "file:///etc/passwd", testPayload, `hook URL file:///etc/passwd refused: scheme "file" is not http or https`},
		{"refuses a relative URL", "/hooks/x", testPayload, `hook URL /hooks/x refused: scheme "" is not http or https`},
		{"refuses a URL without a host", "http:///x", testPayload, "hook URL http:///x refused: no host"},
		{"refuses a URL that does not parse, without repeating it", "http://user:pw@[::1/x", testPayload, "hook URL is not valid: missing ']' in host"},
		{"refuses a payload that cannot be encoded", "http://127.0.0.1:1/x",
			webhooks.Payload{Checks: []analysis.Check{{Metric: "m", Value: &nan}}}, "POST http://127.0.0.1:1/x: encode payload: json: unsupported value: NaN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := New().Do(context.Background(), Call{URL: tt.url, Payload: tt.payload})
			if res.Outcome != Error || res.Message != tt.message || res.Attempts != 0 {
				t.Fatalf("Do = %s %q after %d attempts, want error %q before any attempt", res.Outcome, res.Message, res.Attempts, tt.message)
			}
		})
	}
}

func TestDoAnswersANilContextWithoutPanicking(t *testing.T) {
	var ctx context.Context // a caller's bug, which must not take the engine down
	res := New().Do(ctx, Call{URL: "http://127.0.0.1:1/hook", Payload: testPayload})
	if want := "POST http://127.0.0.1:1/hook: no context"; res.Outcome != Error || res.Message != want {
		t.Fatalf("Do = %s %q, want error %q", res.Outcome, res.Message, want)
	}
}

func TestDoKeepsSecretsOutOfMessages(t *testing.T) {
	const secret = "hunter2"
	tests := []struct {
		name    string
		handler http.HandlerFunc
	}{
		{"when the hook answers 2xx", func(w http.ResponseWriter, r *http.Request) {}},
		{"when the hook rejects the call", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no", 401) }},
		{"when the hook redirects elsewhere", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "http://other.example/?token="+secret, http.StatusTemporaryRedirect)
		}},
		{"when the hook times out", hang},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := serve(t, tt.handler)
			u := strings.Replace(srv.URL, "http://", "http://user:"+secret+"@", 1) + "/hook?token=" + secret
			res := New().Do(context.Background(), Call{Networks: loopback, URL: u, Secret: []byte(secret), Timeout: 200 * time.Millisecond, Payload: testPayload})
			if strings.Contains(res.Message, secret) {
				t.Fatalf("message %q holds a secret", res.Message)
			}
			if want := "POST " + srv.URL + "/hook?...: "; !strings.HasPrefix(res.Message, want) {
				t.Fatalf("message %q, want it to start %q", res.Message, want)
			}
		})
	}
}

func TestDoCallsHTTPS(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(srv.Close)
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	tests := []struct {
		name    string
		opts    []Option
		outcome Outcome
		message string
	}{
		{"calls a server whose CA it was given", []Option{WithTLSConfig(&tls.Config{RootCAs: roots})}, OK, "200 OK"},
		{"refuses a certificate it cannot verify", nil, Error, "certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := New(tt.opts...).Do(context.Background(), Call{Networks: loopback, URL: srv.URL, Payload: testPayload})
			if res.Outcome != tt.outcome || !strings.Contains(res.Message, tt.message) {
				t.Fatalf("Do = %s %q, want %s %q", res.Outcome, res.Message, tt.outcome, tt.message)
			}
		})
	}
}

func TestDoReusesConnectionsAndIsSafeForConcurrentUse(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, `{"requests": 1, "success": 1}`)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	c := New()
	call := Call{Networks: loopback, URL: srv.URL, Secret: []byte("k"), Payload: testPayload}
	for i := range 10 {
		if res := c.Do(context.Background(), call); res.Outcome != OK {
			t.Fatalf("call %d = %s %q, want ok", i, res.Outcome, res.Message)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("10 calls in a row opened %d connections, want 1", n)
	}
	var wg sync.WaitGroup
	results := make([]Result, 32)
	for i := range results {
		wg.Go(func() { results[i] = c.Do(context.Background(), call) })
	}
	wg.Wait()
	for i, res := range results {
		if res.Outcome != OK || res.Load == nil || res.Load.Requests != 1 {
			t.Fatalf("concurrent call %d = %s %q, load %v; want ok with its load result", i, res.Outcome, res.Message, res.Load)
		}
	}
}
