package mesh

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"go.uber.org/goleak"
	networking "istio.io/api/networking/v1alpha3"
	istiofake "istio.io/client-go/pkg/clientset/versioned/fake"
	"k8s.io/apimachinery/pkg/runtime"
	kubefake "k8s.io/client-go/kubernetes/fake"
)

func TestProxyHandler(t *testing.T) {
	defer goleak.VerifyNone(t, ignoreFlagdEventForwarder)

	// The demo world: beta users go to v2, which fails every request and
	// sets a cookie; everyone else goes to v1.
	d := newDemo(annotated(map[string]string{annotationErrorRate: "1", annotationErrorCode: "503", annotationLatency: "1"}))
	vs := betaToV2(exact("beta"))
	vs.Spec.Http[0].Headers = &networking.Headers{Response: &networking.Headers_HeaderOperations{
		Set: map[string]string{"set-cookie": "canary=always; Path=/"},
	}}
	kubeObjects := []runtime.Object{d.svc}
	for _, p := range append(append(d.v1[:0:0], d.v1...), d.v2...) {
		kubeObjects = append(kubeObjects, p)
	}
	e := New(kubefake.NewClientset(kubeObjects...), istiofake.NewSimpleClientset(d.rule, vs), Options{Seed: 1})
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer e.Stop()
	if p := e.Problems(); len(p) > 0 {
		t.Fatalf("problems: %v", p)
	}

	var mu sync.Mutex
	var seen []Request
	defer e.Observe(func(req Request, _ Response) {
		mu.Lock()
		seen = append(seen, req)
		mu.Unlock()
	})()

	srv := httptest.NewServer(e.ProxyHandler("loadtester", "demo"))
	defer srv.Close()
	proxyURL, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	viaProxy := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}}
	defer viaProxy.CloseIdleConnections()
	direct := &http.Client{Transport: &http.Transport{}}
	defer direct.CloseIdleConnections()

	tests := []struct {
		name       string
		method     string
		url        string // through the proxy, or to it when host is set
		host       string // a plain request to the proxy with this Host header
		body       string
		headers    http.Header
		wantCode   int
		wantBody   string // a substring
		wantCookie string
		want       Request // as observers see it
	}{
		{
			name:     "a proxied request for a service's full name reaches the stable revision",
			url:      "http://app.demo.svc.cluster.local/",
			wantCode: 200,
			wantBody: "(workload app-v1, revision aaa111)",
			want: Request{Client: "loadtester", SourceNamespace: "demo", Host: appHost,
				Path: "/", Method: "GET", Protocol: HTTP, Headers: map[string]string{}},
		},
		{
			name:       "a header route sends a beta user to the canary, whose error and cookie come back",
			method:     "POST",
			url:        "http://app:8080/checkout?id=7",
			body:       `{"items":1}`,
			headers:    http.Header{"X-User-Tier": {"beta"}, "X-User": {"alice"}},
			wantCode:   503,
			wantBody:   "from pod demo/app-v2-bbb222-00000 (workload app-v2, revision bbb222)",
			wantCookie: "canary=always",
			want: Request{Client: "loadtester", SourceNamespace: "demo", Host: "app",
				Path: "/checkout?id=7", Method: "POST", Protocol: HTTP, User: "alice",
				Headers: map[string]string{"x-user-tier": "beta", "x-user": "alice"}},
		},
		{
			name:     "a plain request names its target in the Host header",
			url:      "/plain",
			host:     "App.Demo:80",
			wantCode: 200,
			wantBody: "app-v1",
			want: Request{Client: "loadtester", SourceNamespace: "demo", Host: "app.demo",
				Path: "/plain", Method: "GET", Protocol: HTTP, Headers: map[string]string{}},
		},
		{
			name:     "cookies sent in several headers reach the routing as one",
			url:      "http://app/",
			headers:  http.Header{"Cookie": {"a=1", "b=2"}, "X-User-Id": {"user-3"}},
			wantCode: 200,
			wantBody: "app-v1",
			want: Request{Client: "loadtester", SourceNamespace: "demo", Host: "app",
				Path: "/", Method: "GET", Protocol: HTTP, User: "user-3",
				Headers: map[string]string{"cookie": "a=1; b=2", "x-user-id": "user-3"}},
		},
		{
			name:     "an unknown host gets Envoy's 503 NC",
			url:      "http://nowhere.demo.svc.cluster.local/",
			wantCode: 503,
			wantBody: "503 NC",
			want: Request{Client: "loadtester", SourceNamespace: "demo", Host: "nowhere.demo.svc.cluster.local",
				Path: "/", Method: "GET", Protocol: HTTP, Headers: map[string]string{}},
		},
	}
	// Headers every Go client adds are not the test's subject.
	ignoreClientHeaders := cmpopts.IgnoreMapEntries(func(k, _ string) bool {
		return k == "user-agent" || k == "accept-encoding" || k == "content-length"
	})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, target := viaProxy, tt.url
			if tt.host != "" {
				client, target = direct, srv.URL+tt.url
			}
			req, err := http.NewRequest(cmp.Or(tt.method, "GET"), target, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if tt.headers != nil {
				req.Header = tt.headers
			}
			if tt.host != "" {
				req.Host = tt.host
			}
			mu.Lock()
			before := len(seen)
			mu.Unlock()

			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.wantCode || !strings.Contains(string(body), tt.wantBody) {
				t.Errorf("answer = %d %q, want %d and a body containing %q", resp.StatusCode, body, tt.wantCode, tt.wantBody)
			}
			if got := resp.Header.Get("Set-Cookie"); got != tt.wantCookie {
				t.Errorf("Set-Cookie = %q, want %q", got, tt.wantCookie)
			}

			mu.Lock()
			routed := seen[before:]
			mu.Unlock()
			if len(routed) != 1 {
				t.Fatalf("the proxy routed %d requests, want 1", len(routed))
			}
			if diff := gocmp.Diff(tt.want, routed[0], ignoreClientHeaders); diff != "" {
				t.Errorf("routed request mismatch (-want +got):\n%s", diff)
			}
		})
	}

	t.Run("CONNECT is refused with 405 and routes nothing", func(t *testing.T) {
		mu.Lock()
		before := len(seen)
		mu.Unlock()
		conn, err := net.Dial("tcp", proxyURL.Host)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "CONNECT app.demo.svc.cluster.local:443 HTTP/1.1\r\nHost: app.demo.svc.cluster.local:443\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed || !strings.Contains(string(body), "http://app.demo.svc.cluster.local") {
			t.Errorf("answer = %d %q, want 405 pointing at the http:// target", resp.StatusCode, body)
		}
		mu.Lock()
		defer mu.Unlock()
		if n := len(seen) - before; n != 0 {
			t.Errorf("the proxy routed %d requests for a CONNECT, want none", n)
		}
	})

	t.Run("proxied requests are counted and reported like generated traffic", func(t *testing.T) {
		if diff := gocmp.Diff(Counts{Requests: 5, Errors: 2}, e.ClientCounts("loadtester")); diff != "" {
			t.Errorf("ClientCounts(loadtester) mismatch (-want +got):\n%s", diff)
		}
		var total float64
		for _, m := range scrape(t, e.MetricsAddr())["istio_requests_total"].GetMetric() {
			if l := labelMap(m); l["reporter"] == "source" && l["source_workload"] == "loadtester" && l["source_workload_namespace"] == "demo" {
				total += m.GetCounter().GetValue()
			}
		}
		if total != 5 {
			t.Errorf("istio_requests_total{reporter=source,source_workload=loadtester} = %v, want 5", total)
		}
	})
}

func TestProxyDelay(t *testing.T) {
	tests := []struct {
		name      string
		latencyMs float64
		want      time.Duration
	}{
		{"a local reply, which sampled nothing, is not held", 0, 0},
		{"a negative latency is not held", -3, 0},
		{"NaN is not held", math.NaN(), 0},
		{"a sampled latency is held for as long", 12.5, 12500 * time.Microsecond},
		{"a tail beyond the bound is held for the bound only", 3_600_000, maxProxyLatency},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := proxyDelay(tt.latencyMs); got != tt.want {
				t.Errorf("proxyDelay(%v) = %v, want %v", tt.latencyMs, got, tt.want)
			}
		})
	}
}
