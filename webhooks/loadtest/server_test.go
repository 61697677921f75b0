package loadtest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"go.uber.org/goleak"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/fledgehq/fledge/webhooks"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const testSecret = "s3cret"

// target is the canary under load: it counts requests and answers every
// 5th one 500, so that a run's success ratio is known exactly. With a gate,
// requests wait until it is closed.
type target struct {
	*httptest.Server
	requests atomic.Int64
	gate     chan struct{}
	arrived  chan struct{} // one send per request that reached the gate

	mu   sync.Mutex
	last *http.Request
	body string
}

func newTarget(t *testing.T, gated bool) *target {
	tg := &target{arrived: make(chan struct{}, 1<<16)}
	if gated {
		tg.gate = make(chan struct{})
	}
	tg.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := tg.requests.Add(1)
		body, _ := io.ReadAll(r.Body)
		tg.mu.Lock()
		tg.last, tg.body = r, string(body)
		tg.mu.Unlock()
		if tg.gate != nil {
			tg.arrived <- struct{}{}
			select {
			case <-tg.gate:
			case <-r.Context().Done():
				return
			}
		}
		if n%5 == 0 {
			http.Error(w, "every fifth request fails", http.StatusInternalServerError)
			return
		}
		io.WriteString(w, "ok")
	}))
	t.Cleanup(tg.Close)
	return tg
}

func (tg *target) open() {
	select {
	case <-tg.gate:
	default:
		close(tg.gate)
	}
}

// newServer is a tester that allows 127.0.0.1 (httptest's host).
func newServer(t *testing.T, opts Options) *Server {
	t.Helper()
	if opts.Secret == nil {
		opts.Secret = []byte(testSecret)
	}
	if opts.Allow == nil {
		opts.Allow = []string{"127.0.0.1"}
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

func payload(delivery string, metadata map[string]string) webhooks.Payload {
	return webhooks.Payload{
		DeliveryID: delivery, Type: webhooks.Rollout, Hook: "load", Name: "shop", Namespace: "demo",
		Revision: webhooks.Revision{Hash: "bbb222"}, Step: 0, Steps: 3, CanaryWeight: 10, Metadata: metadata,
	}
}

func encode(t *testing.T, p webhooks.Payload) []byte {
	t.Helper()
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// post sends body with the given signature header ("" for none) and
// returns the answer.
func post(s http.Handler, body []byte, signature string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "/load", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if signature != "" {
		req.Header.Set(webhooks.HeaderSignature, signature)
	}
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	return rec
}

// call posts p signed with the test secret at now.
func call(t *testing.T, s http.Handler, p webhooks.Payload, now time.Time) *httptest.ResponseRecorder {
	t.Helper()
	body := encode(t, p)
	return post(s, body, webhooks.Sign([]byte(testSecret), now, body))
}

func loadResult(t *testing.T, rec *httptest.ResponseRecorder) webhooks.LoadResult {
	t.Helper()
	if rec.Code != http.StatusOK {
		t.Fatalf("answer = %d %s, want 200", rec.Code, rec.Body)
	}
	var r webhooks.LoadResult
	if err := json.Unmarshal(rec.Body.Bytes(), &r); err != nil {
		t.Fatalf("answer %s: %v", rec.Body, err)
	}
	return r
}

func errorOf(t *testing.T, rec *httptest.ResponseRecorder) string {
	t.Helper()
	var e struct{ Error string }
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error == "" {
		t.Fatalf("answer %d %q: want a JSON error (%v)", rec.Code, rec.Body, err)
	}
	return e.Error
}

func TestASignedCallRunsTheLoadItAsksFor(t *testing.T) {
	tg := newTarget(t, false)
	s := newServer(t, Options{})

	rec := call(t, s, payload("d-1", map[string]string{
		"url": tg.URL + "/checkout?id=7", "rate": "50", "duration": "1s",
		"method": "post", "headers": "x-user-tier: beta\ncookie: a=1; b=2\n", "body": `{"items":1}`,
	}), time.Now())
	got := loadResult(t, rec)

	// The pacer stops after exactly rate × duration requests (see
	// attack), so the counts are exact, not a timing.
	if n := tg.requests.Load(); n != 50 {
		t.Errorf("the target got %d requests, want 50 (50/s for 1s)", n)
	}
	want := webhooks.LoadResult{LoadFigures: webhooks.LoadFigures{Requests: 50, Success: 0.8, Errors: []string{"500 Internal Server Error"}}}
	if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(webhooks.LoadFigures{}, "P50Ms", "P95Ms", "P99Ms", "Duration")); diff != "" {
		t.Errorf("result mismatch (-want +got):\n%s", diff)
	}
	if got.P50Ms <= 0 || got.P50Ms > got.P95Ms || got.P95Ms > got.P99Ms || got.Duration <= 0 {
		t.Errorf("latencies p50=%g p95=%g p99=%g and duration %g: want positive and ordered", got.P50Ms, got.P95Ms, got.P99Ms, got.Duration)
	}

	tg.mu.Lock()
	defer tg.mu.Unlock()
	r := tg.last
	if r.Method != "POST" || r.URL.RequestURI() != "/checkout?id=7" || tg.body != `{"items":1}` ||
		r.Header.Get("X-User-Tier") != "beta" || r.Header.Get("Cookie") != "a=1; b=2" {
		t.Errorf("the target got %s %s with x-user-tier %q, cookie %q and body %q; want what the metadata asks",
			r.Method, r.URL.RequestURI(), r.Header.Get("X-User-Tier"), r.Header.Get("Cookie"), tg.body)
	}
}

// With stableUrl, the same load goes to both targets at the same time, and
// the answer carries both sides' figures: the canary's where an answer
// without stableUrl has them (so old readers see what they saw), stable's
// under "stable".
func TestAStableURLGetsTheSameLoadAtTheSameTime(t *testing.T) {
	canary, stable := newTarget(t, true), newTarget(t, true)
	s := newServer(t, Options{})

	done := make(chan *httptest.ResponseRecorder, 1)
	go func() {
		done <- call(t, s, payload("d-both", map[string]string{
			"url": canary.URL + "/canary", "stableUrl": stable.URL + "/stable", "rate": "20", "duration": "1s",
		}), time.Now())
	}()
	// Both targets are held at their gates: each sees its first request
	// before either answers any, so the two runs overlap.
	for _, tg := range []*target{canary, stable} {
		select {
		case <-tg.arrived:
		case <-time.After(5 * time.Second):
			t.Fatal("a target got no request while the other was held: the runs do not overlap")
		}
	}
	canary.open()
	stable.open()
	got := loadResult(t, <-done)

	for name, tg := range map[string]*target{"canary": canary, "stable": stable} {
		if n := tg.requests.Load(); n != 20 {
			t.Errorf("the %s target got %d requests, want 20 (20/s for 1s)", name, n)
		}
	}
	if got.Requests != 20 || got.Success != 0.8 {
		t.Errorf("canary side: %d requests, success %g; want 20 and 0.8", got.Requests, got.Success)
	}
	if got.Stable == nil || got.Stable.Requests != 20 || got.Stable.Success != 0.8 || got.Stable.Duration <= 0 {
		t.Fatalf("stable side %+v: want 20 requests, success 0.8 and a duration", got.Stable)
	}
	canary.mu.Lock()
	stable.mu.Lock()
	defer canary.mu.Unlock()
	defer stable.mu.Unlock()
	if canary.last.URL.Path != "/canary" || stable.last.URL.Path != "/stable" {
		t.Errorf("paths: canary got %s, stable got %s", canary.last.URL.Path, stable.last.URL.Path)
	}

	// Without stableUrl, the answer has no stable side at all: old
	// answers read the same.
	rec := call(t, s, payload("d-one", map[string]string{"url": canary.URL, "rate": "5", "duration": "1s"}), time.Now())
	if strings.Contains(rec.Body.String(), `"stable"`) {
		t.Errorf("answer without stableUrl %s: want no stable field", rec.Body)
	}
}

func TestCallsThatAreNotSignedRightAreRefused(t *testing.T) {
	tg := newTarget(t, false)
	s := newServer(t, Options{})
	body := encode(t, payload("d-1", map[string]string{"url": tg.URL, "rate": "1", "duration": "1s"}))
	now := time.Now()

	tests := []struct {
		name      string
		body      []byte
		signature string
		wantError string // a substring
	}{
		{"an unsigned call", body, "", "not signed"},
		{"a call signed with another secret", body, webhooks.Sign([]byte("other"), now, body), "does not match"},
		{"a call whose body changed after signing", bytes.Replace(body, []byte(`"rate":"1"`), []byte(`"rate":"9"`), 1),
			webhooks.Sign([]byte(testSecret), now, body), "does not match"},
		{"a call signed ten minutes ago", body, webhooks.Sign([]byte(testSecret), now.Add(-10*time.Minute), body), "outside the tolerance"},
		{"a call signed ten minutes ahead", body, webhooks.Sign([]byte(testSecret), now.Add(10*time.Minute), body), "outside the tolerance"},
		{"a malformed signature", body, "v1=zz", "signature does not match"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := post(s, tt.body, tt.signature)
			if rec.Code != http.StatusUnauthorized {
				t.Fatalf("answer = %d %s, want 401", rec.Code, rec.Body)
			}
			if msg := errorOf(t, rec); !strings.Contains(msg, tt.wantError) || !strings.HasPrefix(msg, webhooks.HeaderSignature) {
				t.Errorf("error = %q, want it to name %s and say %q", msg, webhooks.HeaderSignature, tt.wantError)
			}
		})
	}
	if n := tg.requests.Load(); n != 0 {
		t.Errorf("the target got %d requests from refused calls, want none", n)
	}
}

func TestBadCallsAreRefusedNamingWhatIsWrong(t *testing.T) {
	tg := newTarget(t, false)
	s := newServer(t, Options{Allow: []string{"127.0.0.1", "*.svc.cluster.local"}})
	ok := map[string]string{"url": tg.URL, "rate": "1", "duration": "1s"}
	with := func(k, v string) map[string]string {
		m := map[string]string{"url": tg.URL, "rate": "1", "duration": "1s"}
		m[k] = v
		return m
	}

	tests := []struct {
		name      string
		payload   webhooks.Payload
		wantCode  int
		wantError string
	}{
		{
			name:      "a target outside the allowlist is forbidden",
			payload:   payload("d", with("url", "http://example.com/")),
			wantCode:  http.StatusForbidden,
			wantError: `metadata.url: host "example.com" is not allowed by this load tester (allowed: 127.0.0.1, *.svc.cluster.local)`,
		},
		{
			name:      "the suffix itself is not under the suffix",
			payload:   payload("d", with("url", "http://svc.cluster.local/")),
			wantCode:  http.StatusForbidden,
			wantError: `metadata.url: host "svc.cluster.local" is not allowed by this load tester (allowed: 127.0.0.1, *.svc.cluster.local)`,
		},
		{
			name:      "a stable target outside the allowlist is forbidden too",
			payload:   payload("d", with("stableUrl", "http://example.com/")),
			wantCode:  http.StatusForbidden,
			wantError: `metadata.stableUrl: host "example.com" is not allowed by this load tester (allowed: 127.0.0.1, *.svc.cluster.local)`,
		},
		{
			name:      "a rate that is not a number names the field",
			payload:   payload("d", with("rate", "abc")),
			wantCode:  http.StatusBadRequest,
			wantError: `metadata.rate: "abc" is not an integer`,
		},
		{
			name:      "a duration above the maximum names the field and the maximum",
			payload:   payload("d", with("duration", "1h")),
			wantCode:  http.StatusBadRequest,
			wantError: `metadata.duration: 1h0m0s is above this load tester's maximum of 5m0s`,
		},
		{
			name:      "a missing url is required",
			payload:   payload("d", map[string]string{"rate": "1"}),
			wantCode:  http.StatusBadRequest,
			wantError: `metadata.url: required: the target of the load`,
		},
		{
			name:      "an unknown key is refused rather than ignored",
			payload:   payload("d", with("rps", "5")),
			wantCode:  http.StatusBadRequest,
			wantError: `metadata.rps: unknown key (want url, stableUrl, rate, duration, method, headers, body)`,
		},
		{
			name: "a hook that is not a load test is refused",
			payload: func() webhooks.Payload {
				p := payload("d", ok)
				p.Type = webhooks.Event
				return p
			}(),
			wantCode:  http.StatusBadRequest,
			wantError: `type: "event" is not a load-test hook (want rollout or pre-rollout)`,
		},
		{
			name:      "a call without a delivery id is refused",
			payload:   payload("", ok),
			wantCode:  http.StatusBadRequest,
			wantError: `deliveryId: required, to run a delivery once`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := call(t, s, tt.payload, time.Now())
			if rec.Code != tt.wantCode {
				t.Errorf("status = %d, want %d", rec.Code, tt.wantCode)
			}
			if msg := errorOf(t, rec); msg != tt.wantError {
				t.Errorf("error = %q, want %q", msg, tt.wantError)
			}
		})
	}

	t.Run("a body over 1 MiB is refused before it is read further", func(t *testing.T) {
		rec := post(s, bytes.Repeat([]byte("x"), MaxBody+1), "")
		if rec.Code != http.StatusRequestEntityTooLarge {
			t.Errorf("status = %d %s, want 413", rec.Code, rec.Body)
		}
	})
	t.Run("a signed body that is not JSON is a bad request", func(t *testing.T) {
		body := []byte("{not json")
		if rec := post(s, body, webhooks.Sign([]byte(testSecret), time.Now(), body)); rec.Code != http.StatusBadRequest {
			t.Errorf("status = %d %s, want 400", rec.Code, rec.Body)
		}
	})
	if n := tg.requests.Load(); n != 0 {
		t.Errorf("the target got %d requests from refused calls, want none", n)
	}
}

func TestConcurrentCallsForOneDeliveryShareOneRun(t *testing.T) {
	tg := newTarget(t, true)
	// With one slot, a second run would be refused 503: a call that did
	// not join the first run fails either way.
	s := newServer(t, Options{MaxConcurrent: 1})
	p := payload("d-1", map[string]string{"url": tg.URL, "rate": "20", "duration": "500ms"})

	var entered sync.WaitGroup
	entered.Add(2)
	counted := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered.Done()
		s.ServeHTTP(w, r)
	})
	recs := make([]*httptest.ResponseRecorder, 2)
	var done sync.WaitGroup
	done.Add(2)
	go func() { defer done.Done(); recs[0] = call(t, counted, p, time.Now()) }()
	<-tg.arrived // the first run is under way, its first request held
	go func() { defer done.Done(); recs[1] = call(t, counted, p, time.Now()) }()
	entered.Wait()
	// The second call is in the tester while the run cannot complete, and
	// the pacer has some 450ms of requests left to send after this.
	tg.open()
	done.Wait()

	first, second := loadResult(t, recs[0]), loadResult(t, recs[1])
	if n := tg.requests.Load(); n != 10 {
		t.Errorf("the target got %d requests, want 10: one run of 20/s for 500ms", n)
	}
	if diff := cmp.Diff(first, second); diff != "" {
		t.Errorf("the two calls got different results (-first +second):\n%s", diff)
	}
}

func TestADeliverySentAgainGetsTheRecordedResult(t *testing.T) {
	tg := newTarget(t, false)
	clk := clocktesting.NewFakePassiveClock(time.Now())
	s := newServer(t, Options{Clock: clk, RecordTTL: time.Hour})
	meta := map[string]string{"url": tg.URL, "rate": "20", "duration": "250ms"}

	first := loadResult(t, call(t, s, payload("d-1", meta), clk.Now()))
	if n := tg.requests.Load(); n != 5 {
		t.Fatalf("the first call sent %d requests, want 5", n)
	}

	t.Run("the same delivery gets the same result and sends nothing", func(t *testing.T) {
		clk.SetTime(clk.Now().Add(59 * time.Minute))
		again := loadResult(t, call(t, s, payload("d-1", meta), clk.Now()))
		if diff := cmp.Diff(first, again); diff != "" {
			t.Errorf("result mismatch (-first +again):\n%s", diff)
		}
		if n := tg.requests.Load(); n != 5 {
			t.Errorf("the target got %d requests in all, want the first run's 5 only", n)
		}
	})
	t.Run("another delivery runs again", func(t *testing.T) {
		loadResult(t, call(t, s, payload("d-2", meta), clk.Now()))
		if n := tg.requests.Load(); n != 10 {
			t.Errorf("the target got %d requests in all, want 10", n)
		}
	})
	t.Run("the same delivery id for another Flight runs again", func(t *testing.T) {
		p := payload("d-1", meta)
		p.Name = "cart"
		loadResult(t, call(t, s, p, clk.Now()))
		if n := tg.requests.Load(); n != 15 {
			t.Errorf("the target got %d requests in all, want 15", n)
		}
	})
	t.Run("a delivery recorded more than the TTL ago runs again", func(t *testing.T) {
		clk.SetTime(clk.Now().Add(2 * time.Minute)) // d-1 is now 61 minutes old
		loadResult(t, call(t, s, payload("d-1", meta), clk.Now()))
		if n := tg.requests.Load(); n != 20 {
			t.Errorf("the target got %d requests in all, want 20", n)
		}
	})
}

func TestCallsBeyondTheConcurrencyBoundAreAskedToComeBack(t *testing.T) {
	tg := newTarget(t, true)
	s := newServer(t, Options{MaxConcurrent: 1})
	meta := map[string]string{"url": tg.URL, "rate": "1", "duration": "1s"}

	done := make(chan *httptest.ResponseRecorder)
	go func() { done <- call(t, s, payload("d-1", meta), time.Now()) }()
	<-tg.arrived

	rec := call(t, s, payload("d-2", meta), time.Now())
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
		t.Errorf("second run: answer = %d (Retry-After %q), want 503 with Retry-After", rec.Code, rec.Header().Get("Retry-After"))
	}
	if msg := errorOf(t, rec); msg != "1 runs already in progress; call again later" {
		t.Errorf("error = %q", msg)
	}
	tg.open()
	loadResult(t, <-done)
}

func TestStopCutsRunsShortWithoutRecordingThem(t *testing.T) {
	tg := newTarget(t, true)
	defer tg.open()
	// Without the run's context on each request, Stop would wait for this
	// timeout, beyond the test's.
	s := newServer(t, Options{RequestTimeout: time.Hour})
	meta := map[string]string{"url": tg.URL, "rate": "1", "duration": "1s"}

	done := make(chan *httptest.ResponseRecorder)
	go func() { done <- call(t, s, payload("d-1", meta), time.Now()) }()
	<-tg.arrived
	s.Stop()

	rec := <-done
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("answer = %d %s, want 503", rec.Code, rec.Body)
	}
	if _, ok := s.record.get(delivery{"demo", "shop", "d-1"}); ok {
		t.Error("a run cut short was recorded")
	}
	if rec := call(t, s, payload("d-1", meta), time.Now()); rec.Code != http.StatusServiceUnavailable {
		t.Errorf("a call after Stop: answer = %d %s, want 503", rec.Code, rec.Body)
	}
}

func TestLoadGoesThroughTheConfiguredProxy(t *testing.T) {
	var proxied atomic.Int64
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A forward proxy gets the absolute URI.
		if r.URL.IsAbs() && r.Host == "shop.demo.svc.cluster.local" {
			proxied.Add(1)
		}
		io.WriteString(w, "via the proxy")
	}))
	defer proxy.Close()
	proxyURL, err := url.Parse(proxy.URL)
	if err != nil {
		t.Fatal(err)
	}
	s := newServer(t, Options{Allow: []string{"*.svc.cluster.local"}, Proxy: http.ProxyURL(proxyURL)})

	got := loadResult(t, call(t, s, payload("d-1", map[string]string{
		"url": "http://shop.demo.svc.cluster.local/", "rate": "10", "duration": "500ms",
	}), time.Now()))
	if got.Requests != 5 || got.Success != 1 || proxied.Load() != 5 {
		t.Errorf("result %+v with %d proxied requests, want 5 successful requests through the proxy", got, proxied.Load())
	}
}

func TestHealthz(t *testing.T) {
	s := newServer(t, Options{})
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	if rec.Code != http.StatusOK {
		t.Errorf("GET /healthz = %d, want 200", rec.Code)
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{"refuses to start without a secret", Options{Allow: []string{"a.b"}},
			"load tester: no signature secret: give one, or accept unsigned calls explicitly (for local testing only)"},
		{"refuses a secret and unsigned calls at once", Options{Secret: []byte("x"), InsecureNoSignature: true, Allow: []string{"a.b"}},
			"load tester: both a signature secret and unsigned calls accepted: choose one"},
		{"refuses to start without an allowlist", Options{Secret: []byte("x")},
			"load tester: allowlist: no host pattern; name the hosts load may go to, e.g. *.svc.cluster.local"},
		{"refuses a pattern that allows everything", Options{Secret: []byte("x"), Allow: []string{"*"}},
			`load tester: allow pattern "*": allows every host; name a suffix such as *.svc.cluster.local`},
		{"starts unsigned when told to", Options{InsecureNoSignature: true, Allow: []string{"a.b"}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(tt.opts)
			if got := errString(err); got != tt.wantErr {
				t.Errorf("error = %q, want %q", got, tt.wantErr)
			}
			if s != nil {
				s.Stop()
			}
		})
	}

	t.Run("targets are proxied as the environment says by default", func(t *testing.T) {
		s := newServer(t, Options{})
		if reflect.ValueOf(s.opts.Proxy).Pointer() != reflect.ValueOf(http.ProxyFromEnvironment).Pointer() {
			t.Error("the default proxy function is not http.ProxyFromEnvironment")
		}
	})
	t.Run("an unsigned tester accepts unsigned calls", func(t *testing.T) {
		tg := newTarget(t, false)
		s := newServer(t, Options{Secret: []byte{}, InsecureNoSignature: true})
		body := encode(t, payload("d-1", map[string]string{"url": tg.URL, "rate": "1", "duration": "1s"}))
		if got := loadResult(t, post(s, body, "")); got.Requests != 1 {
			t.Errorf("requests = %d, want 1", got.Requests)
		}
	})
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
