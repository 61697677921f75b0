package mirrorcmp_test

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/fledgehq/fledge/traffic/mirrorcmp"
)

// seen is a request as an upstream received it.
type seen struct {
	Method, Host, Path, Query string
	Header                    http.Header
	Body                      string
}

// upstream is a canary or a stable: a real HTTP server that records the
// requests it receives and answers them with answer.
type upstream struct {
	*httptest.Server
	mu   sync.Mutex
	seen []seen
}

func newUpstream(t *testing.T, answer http.HandlerFunc) *upstream {
	t.Helper()
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("upstream: read body: %v", err)
		}
		u.mu.Lock()
		u.seen = append(u.seen, seen{Method: r.Method, Host: r.Host, Path: r.URL.Path, Query: r.URL.RawQuery, Header: r.Header.Clone(), Body: string(body)})
		u.mu.Unlock()
		answer(w, r)
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) requests() []seen {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]seen(nil), u.seen...)
}

func answering(status int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

// redirecting sends /items to /landing, which answers 200 "landed".
func redirecting(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/landing" {
		io.WriteString(w, "landed")
		return
	}
	http.Redirect(w, r, "/landing", http.StatusFound)
}

// newProxy serves the comparing proxy between canary and stable, with
// opts' other fields, and returns its URL and the registry it counts in.
func newProxy(t *testing.T, canary, stable string, opts mirrorcmp.Options) (string, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	opts.Canary, opts.Stable, opts.Registerer = mustURL(t, canary), mustURL(t, stable), reg
	h, err := mirrorcmp.NewHandler(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL, reg
}

// client sends the copies; its timeout makes a proxy that holds a copy
// it should answer at once fail a test rather than hang it.
var client = &http.Client{Timeout: 10 * time.Second}

// copyOf sends the proxy a copy as Envoy mirrors one: to path, with the
// host "web-shadow:8080", and returns the proxy's status.
func copyOf(t *testing.T, proxy, method, path string, body io.Reader, header http.Header) int {
	t.Helper()
	req, err := http.NewRequest(method, proxy+path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = "web-shadow:8080"
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func get(t *testing.T, proxy, path string) int {
	t.Helper()
	return copyOf(t, proxy, http.MethodGet, path, nil, nil)
}

// counts reads fledge_mirror_comparisons_total by result.
func counts(t *testing.T, reg *prometheus.Registry) map[string]int {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, f := range families {
		if f.GetName() != "fledge_mirror_comparisons_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			if v := int(m.GetCounter().GetValue()); v != 0 {
				got[m.GetLabel()[0].GetValue()] = v
			}
		}
	}
	return got
}

// wantCounts fails t unless the counts are exactly want (results not in
// want at zero).
func wantCounts(t *testing.T, reg *prometheus.Registry, want map[string]int) {
	t.Helper()
	if diff := cmp.Diff(want, counts(t, reg)); diff != "" {
		t.Errorf("fledge_mirror_comparisons_total (-want +got):\n%s", diff)
	}
}

// comparison sends one GET copy through a proxy between upstreams that
// answer as given and returns what it was counted as.
func comparison(t *testing.T, canary, stable http.HandlerFunc, opts mirrorcmp.Options) map[string]int {
	t.Helper()
	c, s := newUpstream(t, canary), newUpstream(t, stable)
	proxy, reg := newProxy(t, c.URL, s.URL, opts)
	if status := get(t, proxy, "/items"); status != http.StatusNoContent {
		t.Errorf("proxy answered %d, want 204", status)
	}
	if len(c.requests()) != 1 || len(s.requests()) != 1 {
		t.Errorf("canary called %d times, stable %d times; want once each", len(c.requests()), len(s.requests()))
	}
	return counts(t, reg)
}

func TestAnswersToACopyAreCountedByHowTheyCompare(t *testing.T) {
	for _, tc := range []struct {
		name           string
		canary, stable http.HandlerFunc
		want           string
	}{
		{"the same answers are the same", answering(200, "ok"), answering(200, "ok"), "same"},
		{"a 500 where stable answered 200 differs in status", answering(500, "ok"), answering(200, "ok"), "status_differs"},
		{"a 201 where stable answered 200 is the same: one class", answering(201, "ok"), answering(200, "ok"), "same"},
		{"another 200 body differs in body", answering(200, `{"price":2}`), answering(200, `{"price":1}`), "body_differs"},
		{"500s with different bodies are the same", answering(500, "request 7f3a failed"), answering(500, "request 09bc failed"), "same"},
		{"a redirect is compared, not followed", redirecting, answering(200, "landed"), "status_differs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if diff := cmp.Diff(map[string]int{tc.want: 1}, comparison(t, tc.canary, tc.stable, mirrorcmp.Options{})); diff != "" {
				t.Errorf("fledge_mirror_comparisons_total (-want +got):\n%s", diff)
			}
		})
	}
}

// Two versions that compress the same page differently answer the same:
// the proxy compares content, not one compressor's encoding of it.
func TestGzippedAnswersAreComparedByTheirContent(t *testing.T) {
	page := strings.Repeat("the same page, compressed at another level. ", 200)
	gzipped := func(level int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if !strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
				io.WriteString(w, page)
				return
			}
			w.Header().Set("Content-Encoding", "gzip")
			zw, _ := gzip.NewWriterLevel(w, level)
			io.WriteString(zw, page)
			zw.Close()
		}
	}
	c, s := newUpstream(t, gzipped(gzip.BestSpeed)), newUpstream(t, gzipped(gzip.BestCompression))
	proxy, reg := newProxy(t, c.URL, s.URL, mirrorcmp.Options{})
	copyOf(t, proxy, http.MethodGet, "/page", nil, http.Header{"Accept-Encoding": {"gzip, br"}})
	wantCounts(t, reg, map[string]int{"same": 1})
	if got := s.requests()[0].Header.Get("Accept-Encoding"); got != "gzip" {
		t.Errorf("stable was sent Accept-Encoding %q, want the client's own gzip", got)
	}
}

func TestAnUpstreamThatDoesNotAnswerIsUnanswered(t *testing.T) {
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close() // its port now refuses connections
	slow := func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}
	up := newUpstream(t, answering(200, "ok"))
	for _, tc := range []struct {
		name           string
		canary, stable string
		opts           mirrorcmp.Options
	}{
		{"a canary that is down", down.URL, up.URL, mirrorcmp.Options{}},
		{"a stable that is down", up.URL, down.URL, mirrorcmp.Options{}},
		{"a canary slower than Timeout", newUpstream(t, slow).URL, up.URL, mirrorcmp.Options{Timeout: 50 * time.Millisecond}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			proxy, reg := newProxy(t, tc.canary, tc.stable, tc.opts)
			if status := get(t, proxy, "/"); status != http.StatusNoContent {
				t.Errorf("proxy answered %d, want 204", status)
			}
			wantCounts(t, reg, map[string]int{"unanswered": 1})
		})
	}
}

func TestBodiesLongerThanMaxBodyAreComparedByTheirFirstBytesAndLength(t *testing.T) {
	const maxBody = 16
	head := strings.Repeat("h", maxBody)
	for _, tc := range []struct {
		name           string
		canary, stable string
		want           string
	}{
		{"equal long bodies are the same", head + "tail", head + "tail", "same"},
		{"long bodies alike in their first MaxBody bytes but not in length differ", head + "tail", head + "tails", "body_differs"},
		{"long bodies that differ in their first MaxBody bytes differ", "H" + head[1:] + "tail", head + "tail", "body_differs"},
		// The documented limit: past MaxBody only the length counts.
		{"long bodies of one length that differ past MaxBody alone are the same", head + "tail", head + "TAIL", "same"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := comparison(t, answering(200, tc.canary), answering(200, tc.stable), mirrorcmp.Options{MaxBody: maxBody})
			if diff := cmp.Diff(map[string]int{tc.want: 1}, got); diff != "" {
				t.Errorf("fledge_mirror_comparisons_total (-want +got):\n%s", diff)
			}
		})
	}
}

// A Sample of 0.5 compares about half of the copies and answers the rest
// at once, forwarded to neither upstream; and it chooses the same copies
// every run.
func TestASampleOfHalfComparesAboutHalfTheCopiesTheSameEveryRun(t *testing.T) {
	const copies = 1000
	compared := func() int {
		c, s := newUpstream(t, answering(200, "ok")), newUpstream(t, answering(200, "ok"))
		proxy, reg := newProxy(t, c.URL, s.URL, mirrorcmp.Options{Sample: 0.5})
		for range copies {
			if status := get(t, proxy, "/"); status != http.StatusNoContent && status != http.StatusAccepted {
				t.Fatalf("proxy answered %d, want 204 or 202", status)
			}
		}
		n := len(c.requests())
		if len(s.requests()) != n {
			t.Errorf("canary called %d times, stable %d times; want as often", n, len(s.requests()))
		}
		wantCounts(t, reg, map[string]int{"same": n, "skipped": copies - n})
		return n
	}
	first := compared()
	// 3 standard deviations of a fair coin's count over 1000 throws.
	if first < 453 || first > 547 {
		t.Errorf("%d of %d copies compared, want about half", first, copies)
	}
	if again := compared(); again != first {
		t.Errorf("a second run compared %d copies, the first %d; want the same", again, first)
	}
}

// Copies that arrive while MaxInFlight comparisons are under way are
// dropped at once, not queued behind them.
func TestCopiesBeyondMaxInFlightAreDroppedNotQueued(t *testing.T) {
	arrived, release := make(chan struct{}, 2), make(chan struct{})
	c := newUpstream(t, func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
		io.WriteString(w, "ok")
	})
	s := newUpstream(t, answering(200, "ok"))
	proxy, reg := newProxy(t, c.URL, s.URL, mirrorcmp.Options{MaxInFlight: 2})
	// Registered last, so run first: the servers' Close waits for the
	// requests the canary holds.
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) })

	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			if status := get(t, proxy, "/slow"); status != http.StatusNoContent {
				t.Errorf("a held copy was answered %d, want 204", status)
			}
		})
	}
	for range 2 {
		select {
		case <-arrived:
		case <-time.After(10 * time.Second):
			t.Fatal("the canary did not receive both held copies")
		}
	}
	if status := get(t, proxy, "/"); status != http.StatusAccepted {
		t.Errorf("the copy beyond MaxInFlight was answered %d, want 202", status)
	}
	wantCounts(t, reg, map[string]int{"dropped": 1})

	once.Do(func() { close(release) })
	wg.Wait()
	wantCounts(t, reg, map[string]int{"dropped": 1, "same": 2})
	if n := len(c.requests()); n != 2 {
		t.Errorf("canary called %d times, want 2: the dropped copy is not forwarded", n)
	}
}

func TestUnsafeMethodsAreForwardedToNeitherUpstream(t *testing.T) {
	c, s := newUpstream(t, answering(200, "ok")), newUpstream(t, answering(200, "ok"))
	proxy, reg := newProxy(t, c.URL, s.URL, mirrorcmp.Options{})
	for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		if status := copyOf(t, proxy, method, "/orders/7", strings.NewReader(`{"qty":1}`), nil); status != http.StatusNoContent {
			t.Errorf("%s answered %d, want 204", method, status)
		}
	}
	wantCounts(t, reg, map[string]int{"unsafe": 4})
	if nc, ns := len(c.requests()), len(s.requests()); nc != 0 || ns != 0 {
		t.Errorf("canary called %d times, stable %d times; want neither", nc, ns)
	}
}

// Both upstreams receive the copy as the user sent it: method, path (after
// the base URL's), query, the host without "-shadow", the end-to-end
// headers, and the body, byte for byte.
func TestBothUpstreamsReceiveTheCopyAsTheUserSentIt(t *testing.T) {
	c, s := newUpstream(t, answering(200, "ok")), newUpstream(t, answering(200, "ok"))
	proxy, reg := newProxy(t, c.URL+"/v2", s.URL+"/", mirrorcmp.Options{})
	body := bytes.Repeat([]byte("search body \x00\xff "), 500)
	copyOf(t, proxy, http.MethodGet, "/items/a%2Fb?q=1&q=2", bytes.NewReader(body), http.Header{
		"Authorization":       {"Bearer user"},
		"X-Request-Id":        {"7f3a"},
		"User-Agent":          {"shop-app/1.0"},
		"Connection":          {"X-Hop"},
		"X-Hop":               {"1"},
		"Proxy-Authorization": {"Basic cHJveHk="},
	})
	wantCounts(t, reg, map[string]int{"same": 1})

	for _, tc := range []struct {
		name, path string
		up         *upstream
	}{{"canary", "/v2/items/a/b", c}, {"stable", "/items/a/b", s}} {
		reqs := tc.up.requests()
		if len(reqs) != 1 {
			t.Fatalf("%s received %d requests, want 1", tc.name, len(reqs))
		}
		got := reqs[0]
		want := seen{Method: http.MethodGet, Host: "web:8080", Path: tc.path, Query: "q=1&q=2", Body: string(body)}
		if diff := cmp.Diff(want, got, cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".Header" }, cmp.Ignore())); diff != "" {
			t.Errorf("%s received (-want +got):\n%s", tc.name, diff)
		}
		for name, want := range map[string]string{
			"Authorization":       "Bearer user",
			"X-Request-Id":        "7f3a",
			"User-Agent":          "shop-app/1.0",
			"X-Hop":               "",
			"Proxy-Authorization": "",
			mirrorcmp.LoopHeader:  "1",
		} {
			if v := got.Header.Get(name); v != want {
				t.Errorf("%s received %s: %q, want %q", tc.name, name, v, want)
			}
		}
	}
}

func TestACopyWithABodyOverMaxBodyIsDropped(t *testing.T) {
	c, s := newUpstream(t, answering(200, "ok")), newUpstream(t, answering(200, "ok"))
	proxy, reg := newProxy(t, c.URL, s.URL, mirrorcmp.Options{MaxBody: 8})
	if status := copyOf(t, proxy, http.MethodGet, "/", strings.NewReader("123456789"), nil); status != http.StatusAccepted {
		t.Errorf("proxy answered %d, want 202", status)
	}
	copyOf(t, proxy, http.MethodGet, "/", strings.NewReader("12345678"), nil)
	wantCounts(t, reg, map[string]int{"dropped": 1, "same": 1})
	if nc, ns := len(c.requests()), len(s.requests()); nc != 1 || ns != 1 {
		t.Errorf("canary called %d times, stable %d times; want once each, for the body within MaxBody", nc, ns)
	}
}

// A sidecar in front of the proxy would route its forwarded requests by
// their host, along the user's route, and mirror them back to it: such a
// copy is dropped, so that the loop ends there.
func TestACopyOfTheProxysOwnRequestIsDropped(t *testing.T) {
	c, s := newUpstream(t, answering(200, "ok")), newUpstream(t, answering(200, "ok"))
	proxy, reg := newProxy(t, c.URL, s.URL, mirrorcmp.Options{})
	copyOf(t, proxy, http.MethodGet, "/", nil, http.Header{mirrorcmp.LoopHeader: {"1"}})
	wantCounts(t, reg, map[string]int{"dropped": 1})
	if nc, ns := len(c.requests()), len(s.requests()); nc != 0 || ns != 0 {
		t.Errorf("canary called %d times, stable %d times; want neither", nc, ns)
	}
}

// Every result is exposed at zero from the start, so that the analysis's
// increase() sees a proxy's first difference.
func TestEveryResultIsExposedFromTheStart(t *testing.T) {
	_, reg := newProxy(t, "http://web-canary", "http://web", mirrorcmp.Options{})
	var want strings.Builder
	want.WriteString("# HELP fledge_mirror_comparisons_total Mirrored copies received by the comparing proxy, by result: same, status_differs, body_differs (canary and stable answered; the canary differently), unanswered (an upstream failed: nothing compared), unsafe (not a safe method: forwarded to neither), skipped (not sampled), dropped (over the proxy's bounds).\n")
	want.WriteString("# TYPE fledge_mirror_comparisons_total counter\n")
	for _, r := range []string{"body_differs", "dropped", "same", "skipped", "status_differs", "unanswered", "unsafe"} {
		want.WriteString(`fledge_mirror_comparisons_total{result="` + r + `"} 0` + "\n")
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want.String()), "fledge_mirror_comparisons_total"); err != nil {
		t.Error(err)
	}
}
