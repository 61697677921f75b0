package mesh

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"math"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"
)

// The proxy lets a real process (the load tester, run beside the sandbox)
// send traffic "through the mesh": pointed at ProxyHandler with
// HTTP_PROXY, its requests are routed, counted and reported in Istio's
// metrics exactly like generated traffic, which is what fledge's analysis
// reads. Nothing is forwarded anywhere: the routed pod's behaviour decides
// the answer, as for every other request of the emulator.

// maxProxyLatency bounds the sampled latency the proxy sleeps. A pod
// annotated with a long tail may sample up to behaviour.go's hour; the
// metrics record the sampled value, but a real caller must not be held for
// longer than any sane client timeout.
const maxProxyLatency = 10 * time.Second

// maxProxyBody is how much of a request body the proxy reads (and drops)
// before answering, so that a client writing a body is not reset.
const maxProxyBody = 1 << 20

// userHeader carries the calling user's id for a proxied request; the
// generated clients' x-user-id is accepted too.
const userHeader = "x-user"

// hopByHop are the headers a proxy consumes rather than passes on (RFC 9110
// section 7.6.1), so Envoy would not match routes on them.
var hopByHop = map[string]bool{
	"connection": true, "proxy-connection": true, "keep-alive": true, "proxy-authorization": true,
	"proxy-authenticate": true, "te": true, "trailer": true, "transfer-encoding": true, "upgrade": true,
}

// ProxyHandler returns an http.Handler that acts as the outbound sidecar of a workload named
// client in namespace ns: it accepts proxy-style requests (absolute URI, as an HTTP client with
// HTTP_PROXY sends them, and also plain requests using the Host header), routes each through
// e.Route like generated traffic (same metrics, counters and observers, Client=client,
// SourceNamespace=ns), sleeps the sampled latency (real callers measure it) bounded by a max,
// and answers with the routed status code (and a small text body naming the pod/revision).
//
// Only plain HTTP is routed: a CONNECT (what a client sends through a proxy
// for an https:// target) is answered 405, since the emulator cannot see
// inside a tunnel. The handler may be used before Start, when every request
// gets 503 NC like Route.
func (e *Emulator) ProxyHandler(client, namespace string) http.Handler {
	return &proxy{e: e, client: client, namespace: namespace}
}

type proxy struct {
	e                 *Emulator
	client, namespace string
}

func (p *proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodConnect {
		http.Error(w, fmt.Sprintf("mesh proxy: CONNECT %s: tunnels (https:// targets) are not supported; the emulator routes plain HTTP only, call http://%s", r.Host, hostWithoutPort(r.Host)), http.StatusMethodNotAllowed)
		return
	}
	req, err := proxyRequest(r, p.client, p.namespace)
	if err != nil {
		http.Error(w, "mesh proxy: "+err.Error(), http.StatusBadRequest)
		return
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, maxProxyBody))

	resp := p.e.Route(req)
	if d := proxyDelay(resp.LatencyMs); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			return // the caller gave up; it has already been counted, as Envoy would
		}
	}

	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	for _, name := range slices.Sorted(maps.Keys(resp.SetCookies)) {
		h.Add("Set-Cookie", name+"="+resp.SetCookies[name])
	}
	if resp.Pod != "" {
		h.Set("X-Mesh-Pod", resp.Pod)
		h.Set("X-Mesh-Revision", resp.TemplateHash)
	}
	if resp.Flags != flagNone {
		h.Set("X-Mesh-Response-Flags", resp.Flags)
	}
	if resp.Variant != "" {
		h.Set("X-Flag-Variant", resp.Variant)
	}
	w.WriteHeader(resp.Code)
	fmt.Fprintln(w, describeResponse(resp))
}

// proxyRequest maps an incoming HTTP request onto the emulator's Request.
// net/http has already taken the authority from an absolute request URI
// when there is one (RFC 9112 section 3.2.2), so r.Host covers both styles.
func proxyRequest(r *http.Request, client, namespace string) (Request, error) {
	host := strings.ToLower(hostWithoutPort(r.Host))
	if host == "" {
		return Request{}, fmt.Errorf("%s %s: no host: send an absolute URI or a Host header", r.Method, r.URL)
	}
	headers := make(map[string]string, len(r.Header))
	for name, values := range r.Header {
		name = strings.ToLower(name)
		if hopByHop[name] {
			continue
		}
		sep := ","
		if name == cookieHeader {
			sep = "; "
		}
		headers[name] = strings.Join(values, sep)
	}
	return Request{
		Client:          client,
		SourceNamespace: namespace,
		Host:            host,
		Path:            r.URL.RequestURI(),
		Method:          r.Method,
		Protocol:        HTTP,
		User:            cmp.Or(headers[userHeader], headers[userIDHeader]),
		Headers:         headers,
	}, nil
}

// hostWithoutPort strips an optional ":port" from an authority.
func hostWithoutPort(authority string) string {
	if h, _, err := net.SplitHostPort(authority); err == nil {
		return h
	}
	return authority
}

// proxyDelay is how long to hold a request that sampled latencyMs.
func proxyDelay(latencyMs float64) time.Duration {
	if math.IsNaN(latencyMs) || latencyMs <= 0 {
		return 0
	}
	if latencyMs >= float64(maxProxyLatency/time.Millisecond) {
		return maxProxyLatency
	}
	return time.Duration(latencyMs * float64(time.Millisecond))
}

// describeResponse is the body of a proxied answer: enough for a person
// reading a load tester's errors to tell which revision answered, or why
// none did.
func describeResponse(r Response) string {
	switch {
	case r.Pod != "":
		return fmt.Sprintf("%d from pod %s/%s (workload %s, revision %s)", r.Code, r.Namespace, r.Pod, r.Workload, r.TemplateHash)
	case r.Flags == flagNoRoute:
		return fmt.Sprintf("%d NR: no route matched", r.Code)
	case r.Flags == flagNoCluster:
		return fmt.Sprintf("%d NC: no cluster (unknown host or subset, or all weights 0) %s", r.Code, r.Service)
	case r.Flags == flagNoHealthy:
		return fmt.Sprintf("%d UH: no healthy upstream for %s", r.Code, r.Service)
	default:
		return fmt.Sprintf("%d answered by the mesh (direct response or redirect)", r.Code)
	}
}
