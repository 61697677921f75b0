package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	fakediscovery "k8s.io/client-go/discovery/fake"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/leaderelection"
)

// istioV1 is what an API server with Istio 1.22 or later serves.
var istioV1 = &metav1.APIResourceList{GroupVersion: "networking.istio.io/v1", APIResources: []metav1.APIResource{
	{Name: "destinationrules", Kind: "DestinationRule", Namespaced: true},
	{Name: "virtualservices", Kind: "VirtualService", Namespaced: true},
}}

// apiServer is a fake discovery whose Istio API can be installed and
// removed while checks run, and fail otherwise.
type apiServer struct {
	*fakediscovery.FakeDiscovery
	istio atomic.Bool
	fail  atomic.Pointer[error]
}

func newAPIServer(resources ...*metav1.APIResourceList) *apiServer {
	a := &apiServer{FakeDiscovery: &fakediscovery.FakeDiscovery{Fake: &clienttesting.Fake{Resources: resources}}}
	a.istio.Store(true)
	// Resources stay as given (read by the check, never written): the
	// reactor says whether Istio is there now, without a data race.
	a.PrependReactor("get", "resource", func(clienttesting.Action) (bool, runtime.Object, error) {
		if err := a.fail.Load(); err != nil {
			return true, nil, *err
		}
		if !a.istio.Load() {
			return true, nil, apierrors.NewNotFound(schema.GroupResource{}, "networking.istio.io/v1")
		}
		return false, nil, nil
	})
	return a
}

// The Istio check asks discovery for networking.istio.io/v1 and says
// plainly what is missing and how to install it, or why it cannot tell.
func TestIstioCheck(t *testing.T) {
	slow := &blockingDiscovery{release: make(chan struct{})}
	defer close(slow.release)
	for _, tc := range []struct {
		name    string
		api     discovery.ServerResourcesInterface
		wantErr string // "" when the check holds
	}{
		{name: "holds when VirtualServices are served in networking.istio.io/v1", api: newAPIServer(istioV1)},
		{name: "fails without Istio, saying what to install", api: newAPIServer(),
			wantErr: "Istio's CRDs are not installed: networking.istio.io/v1 VirtualService is not served by the API server; install Istio 1.22 or later, or only its CRDs (the istio/base Helm chart)"},
		{name: "fails with an Istio older than 1.22, which serves v1beta1 only",
			api:     newAPIServer(&metav1.APIResourceList{GroupVersion: "networking.istio.io/v1beta1", APIResources: istioV1.APIResources}),
			wantErr: "Istio's CRDs are not installed"},
		{name: "fails when the group is served without VirtualServices",
			api:     newAPIServer(&metav1.APIResourceList{GroupVersion: "networking.istio.io/v1", APIResources: istioV1.APIResources[:1]}),
			wantErr: "Istio's CRDs are not installed"},
		{name: "says it cannot tell when the API server fails", api: failing(newAPIServer(istioV1), errors.New("connection refused")),
			wantErr: "cannot tell whether Istio's CRDs are installed: asking the API server for networking.istio.io/v1: connection refused"},
		{name: "gives up on an API server that does not answer in time", api: slow,
			wantErr: "cannot tell whether Istio's CRDs are installed: the API server did not answer discovery of networking.istio.io/v1 in time"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			err := istioServed(tc.api).check(ctx)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("check: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("check: %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func failing(a *apiServer, err error) *apiServer {
	a.fail.Store(&err)
	return a
}

// blockingDiscovery is an API server that never answers discovery.
type blockingDiscovery struct {
	fakediscovery.FakeDiscovery
	release chan struct{}
}

func (b *blockingDiscovery) ServerResourcesForGroupVersion(string) (*metav1.APIResourceList, error) {
	<-b.release
	return nil, errors.New("released")
}

// flakyPrometheus is a Prometheus whose address refuses connections until
// up is called, and again after down.
type flakyPrometheus struct {
	t    *testing.T
	addr string
	srv  *httptest.Server
}

func newFlakyPrometheus(t *testing.T) *flakyPrometheus {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &flakyPrometheus{t: t, addr: l.Addr().String()}
	l.Close() // down: nothing listens there
	t.Cleanup(p.down)
	return p
}

func (p *flakyPrometheus) url() string { return "http://" + p.addr }

func (p *flakyPrometheus) up() {
	p.t.Helper()
	l, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatal(err)
	}
	p.srv = &httptest.Server{Listener: l, Config: &http.Server{Handler: &fakePrometheus{}}}
	p.srv.Start()
}

func (p *flakyPrometheus) down() {
	if p.srv != nil {
		p.srv.Close()
		p.srv = nil
	}
}

// logLines is a slog JSON log kept in memory, one map per line.
type logLines struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// take returns the lines logged since the last call, as level: message
// [check] reason.
func (l *logLines) take(t *testing.T) []string {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for line := range strings.Lines(l.buf.String()) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		s := fmt.Sprintf("%s: %s", m["level"], m["msg"])
		if c, ok := m["check"]; ok {
			s += fmt.Sprintf(" [%s]", c)
		}
		if r, ok := m["reason"]; ok {
			s += fmt.Sprintf(" %s", r)
		}
		out = append(out, s)
	}
	l.buf.Reset()
	return out
}

// A cluster without Istio's CRDs and a Prometheus that does not answer:
// fledge does not start, says once per change what is missing, and starts
// once both are there. A Prometheus outage after the start is logged and
// shown by the gauge but does not make fledge unready again.
func TestPreconditionsGateTheStart(t *testing.T) {
	api := newAPIServer(istioV1)
	api.istio.Store(false)
	prom := newFlakyPrometheus(t)
	client, err := newPrometheus(prometheusFlags{url: prom.url()}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var logs logLines
	reg := prometheus.NewRegistry()
	pre := newPreconditions(reg, slog.New(slog.NewJSONHandler(&logs, nil)), 30*time.Second, istioServed(api), prometheusAnswers(client.Ping))
	ctx := context.Background()
	gauges := func() string {
		return fmt.Sprintf("istio-crds=%v prometheus=%v", testutil.ToFloat64(pre.ok.WithLabelValues("istio-crds")), testutil.ToFloat64(pre.ok.WithLabelValues("prometheus")))
	}
	started := func() bool {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
		defer cancel()
		return pre.wait(ctx)
	}
	const waits = "ERROR: fledge waits for a precondition: it acts on nothing and /readyz fails until it holds; checked again every 30s"
	const acts = "ERROR: a precondition does not hold: fledge acts, rollouts that need it hold, and /readyz fails until it holds; checked again every 30s"

	if why := pre.notReady(); !strings.Contains(why, "fledge is checking its preconditions (istio-crds, prometheus)") {
		t.Errorf("before the first round, not ready says %q", why)
	}

	// Neither is there.
	for round := 1; round <= 3; round++ {
		if pre.checkOnce(ctx) || started() {
			t.Fatalf("round %d: started without Istio and Prometheus", round)
		}
		lines := pre.notReady()
		for _, want := range []string{
			"fledge has not started: it waits for its preconditions, checked every 30s:",
			"\nistio-crds: Istio's CRDs are not installed: networking.istio.io/v1 VirtualService is not served by the API server",
			"\nprometheus: Prometheus does not answer a query: query \"vector(1)\": prometheus cannot be reached",
			"connection refused; check that it runs and that fledge's --prometheus-url and other --prometheus-* flags (TLS, credentials) are right",
		} {
			if !strings.Contains(lines, want) {
				t.Errorf("round %d: /readyz says %q, want %q in it", round, lines, want)
			}
		}
		logged := logs.take(t)
		if round == 1 {
			if len(logged) != 2 || !strings.HasPrefix(logged[0], waits+" [istio-crds] Istio's CRDs are not installed") ||
				!strings.HasPrefix(logged[1], acts+" [prometheus] Prometheus does not answer a query") {
				t.Errorf("round 1 logged:\n%s\nwant one error line for each check, saying what is missing", strings.Join(logged, "\n"))
			}
		} else if len(logged) != 0 {
			t.Errorf("round %d logged again although nothing changed:\n%s", round, strings.Join(logged, "\n"))
		}
		if g := gauges(); g != "istio-crds=0 prometheus=0" {
			t.Errorf("round %d: gauges %s", round, g)
		}
	}

	// Istio is installed: fledge acts (a replica started in a Prometheus
	// outage still carries out aborts and deadlines), and is not ready
	// until Prometheus answers.
	api.istio.Store(true)
	if pre.checkOnce(ctx) || !started() {
		t.Fatal("not started with Istio installed: Prometheus alone does not stop fledge from acting")
	}
	if why := pre.notReady(); strings.Contains(why, "istio-crds") || !strings.HasPrefix(why, "fledge acts, but waits for a precondition") || !strings.Contains(why, "\nprometheus: ") {
		t.Errorf("with Istio installed, /readyz says %q, want Prometheus alone", why)
	}
	if logged := logs.take(t); len(logged) != 2 || logged[0] != "INFO: precondition holds now [istio-crds]" || logged[1] != "INFO: fledge starts: every precondition it acts on holds" {
		t.Errorf("Istio installed: logged %q, want that it holds now and fledge starts", logged)
	}

	// Prometheus comes up: fledge is ready.
	prom.up()
	if !pre.checkOnce(ctx) || !started() {
		t.Fatal("a check failed with both there")
	}
	if why := pre.notReady(); why != "" {
		t.Errorf("both there, yet not ready: %q", why)
	}
	if logged := logs.take(t); len(logged) != 1 || logged[0] != "INFO: precondition holds now [prometheus]" {
		t.Errorf("Prometheus up: logged %q", logged)
	}
	if g := gauges(); g != "istio-crds=1 prometheus=1" {
		t.Errorf("started: gauges %s", g)
	}

	// A later outage: logged once, on the gauge, and fledge stays ready.
	prom.down()
	for round := 1; round <= 2; round++ {
		if pre.checkOnce(ctx) {
			t.Fatal("the check held with Prometheus down")
		}
		if why := pre.notReady(); why != "" {
			t.Errorf("a Prometheus outage after the start made fledge unready: %q", why)
		}
		logged := logs.take(t)
		want := 0
		if round == 1 {
			want = 1
		}
		if len(logged) != want || (want == 1 && !strings.HasPrefix(logged[0], "ERROR: a precondition no longer holds: fledge keeps running and stays ready, rollouts that need it hold; checked again every 30s [prometheus] Prometheus does not answer")) {
			t.Errorf("outage round %d: logged %q, want %d line saying fledge keeps running", round, logged, want)
		}
	}
	if g := gauges(); g != "istio-crds=1 prometheus=0" {
		t.Errorf("outage: gauges %s", g)
	}
	prom.up()
	pre.checkOnce(ctx)
	if logged := logs.take(t); len(logged) != 1 || logged[0] != "INFO: precondition holds now [prometheus]" {
		t.Errorf("recovered: logged %q", logged)
	}
}

// The engine's /readyz while it waits, as a probe sees it: 503 with each
// missing precondition's reason, then 200 once they hold (the loop
// re-checks by itself), and /healthz 200 all along.
func TestReadyzWhileWaitingForIstioAndPrometheus(t *testing.T) {
	api := newAPIServer(istioV1)
	api.istio.Store(false)
	prom := newFlakyPrometheus(t)
	client, err := newPrometheus(prometheusFlags{url: prom.url()}, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	pre := newPreconditions(nil, slog.New(slog.DiscardHandler), 20*time.Millisecond, istioServed(api), prometheusAnswers(client.Ping))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go pre.run(ctx)
	h := healthHandler(leaderelection.NewLeaderHealthzAdaptor(20*time.Second), pre.notReady, func() bool { return true })
	get := func(path string) (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Code, rec.Body.String()
	}
	waitFor := func(what string, ok func(code int, body string) bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			code, body := get("/readyz")
			if ok(code, body) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: /readyz still %d %q", what, code, body)
			}
			if code, body := get("/healthz"); code != http.StatusOK {
				t.Fatalf("%s: /healthz %d %q, want 200 while waiting", what, code, body)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitFor("neither there", func(code int, body string) bool {
		return code == http.StatusServiceUnavailable && strings.Contains(body, "istio-crds: Istio's CRDs are not installed") && strings.Contains(body, "prometheus: Prometheus does not answer")
	})
	api.istio.Store(true)
	waitFor("Istio installed", func(code int, body string) bool {
		return code == http.StatusServiceUnavailable && !strings.Contains(body, "istio-crds") && strings.Contains(body, "prometheus: Prometheus does not answer")
	})
	prom.up()
	waitFor("both there", func(code int, body string) bool { return code == http.StatusOK && body == "ok\n" })
	if !pre.wait(ctx) {
		t.Error("ready, but wait did not return")
	}
}
