//go:build e2e

package ship_test

import (
	"context"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/fledgehq/fledge/e2e/sandbox"
	"github.com/fledgehq/fledge/rollout"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
)

// An install into a cluster without Istio's CRDs, or with a Prometheus
// fledge cannot reach, gives one clear error at start and a failing
// readiness probe, not a crash loop; fledge starts by itself once both are
// there, and a later Prometheus outage leaves it ready and running.
//
// The engine sees the API server through a proxy that hides Istio's API
// (it answers 404 under /apis/networking.istio.io, as an API server
// without the CRDs does), and Prometheus at an address that refuses
// connections until a proxy there forwards to the sandbox's Prometheus:
// the shared sandbox itself is left as it is.
func TestEngineWaitsForIstioAndPrometheusWithoutCrashLooping(t *testing.T) {
	sb, ns := suite.Namespace(t)
	ctx := context.Background()
	installCRDs(t, sb)
	if err := sb.InstallRBAC(ctx, engineNamespace, repoFile("deploy/rbac.yaml")); err != nil {
		t.Fatal(err)
	}
	if err := sb.ApplyRBAC(ctx, repoFile("deploy/rbac-namespace.yaml"), ns); err != nil {
		t.Fatal(err)
	}
	policyFile := filepath.Join(t.TempDir(), "policies.yaml")
	if err := os.WriteFile(policyFile, []byte(dashboardPolicy), 0o644); err != nil {
		t.Fatal(err)
	}
	api := startAPIProxy(t, sb)
	api.hideIstio.Store(true)
	promAddr, healthAddr, metricsAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	engine, err := sb.StartProcess(ns+"-fledge", nil, buildBinary(t, "fledge"),
		"--kubeconfig="+api.kubeconfig(t, sb), "--policies="+policyFile,
		"--prometheus-url=http://"+promAddr, "--precondition-retry=500ms",
		"--health-addr="+healthAddr, "--metrics-addr="+metricsAddr, "--namespaces="+ns,
		"--leader-election-namespace="+engineNamespace, "--leader-election-id=fledge-"+ns, "--identity=fledge",
		"--lease-duration=4s", "--renew-deadline=3s", "--retry-period=500ms")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = engine.Stop() })
	health := "http://" + healthAddr

	// Neither is there: not ready, saying why; alive; acting on nothing.
	waitProbe(t, engine, health+"/readyz", http.StatusServiceUnavailable,
		"istio-crds: Istio's CRDs are not installed: networking.istio.io/v1 VirtualService is not served by the API server",
		"prometheus: Prometheus does not answer a query")
	sb.CreateApp(t, ns, sandbox.App{Name: "shop", Container: "shop", Replicas: 2, Annotations: map[string]string{rollout.AnnotationRollout: "ship"}})
	time.Sleep(3 * time.Second) // six rounds of checks
	if exited, err := engine.Exited(); exited {
		t.Fatalf("the engine exited while waiting (%v); log %s", err, engine.LogPath())
	}
	if code, body := probe(t, health+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz while waiting: %d %q, want 200 (a restart fixes nothing)", code, body)
	}
	if _, err := sb.Fledge.FledgeV1alpha1().Flights(ns).Get(ctx, "shop", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("a Flight for shop while fledge waits for Istio (%v): it took the Deployment over", err)
	}
	if d, err := sb.Kube.AppsV1().Deployments(ns).Get(ctx, "shop", metav1.GetOptions{}); err != nil || d.Spec.Paused {
		t.Errorf("shop while fledge waits: %v, paused %v; want it untouched", err, d != nil && d.Spec.Paused)
	}
	log := engineLog(t, engine)
	for check, msg := range map[string]string{"istio-crds": "fledge waits for a precondition", "prometheus": "a precondition does not hold"} {
		re := regexp.MustCompile(`"level":"ERROR","msg":"` + msg + `[^"]*","check":"` + check + `"`)
		if n := len(re.FindAllString(log, -1)); n != 1 {
			t.Errorf("%d error lines for %s over six rounds, want one (logged again only when the state changes); log %s", n, check, engine.LogPath())
		}
	}

	// Istio's API appears: fledge starts and takes shop over (a replica
	// started in a Prometheus outage still acts: aborts, deadlines), and
	// stays unready until Prometheus answers.
	api.hideIstio.Store(false)
	waitProbe(t, engine, health+"/readyz", http.StatusServiceUnavailable, "fledge acts, but waits for a precondition", "prometheus: Prometheus does not answer", "-istio-crds")
	sb.WaitFlight(t, ns, "shop", time.Minute, func(f *v1alpha1.Flight) bool { return f.Status.Phase == v1alpha1.PhaseIdle })

	// Prometheus answers: ready.
	stopProm := forwardOn(t, promAddr, sb.PrometheusURL)
	waitProbe(t, engine, health+"/readyz", http.StatusOK, "ok")

	// Prometheus goes away again: logged, on the gauge, and fledge stays
	// ready and running (its rollouts would hold).
	stopProm()
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 20*time.Second, true, func(context.Context) (bool, error) {
		_, metrics := probe(t, "http://"+metricsAddr+"/metrics")
		return strings.Contains(metrics, `fledge_precondition_ok{check="prometheus"} 0`), nil
	})
	if err != nil {
		t.Fatal("fledge_precondition_ok{check=\"prometheus\"} never went to 0 with Prometheus gone")
	}
	time.Sleep(time.Second) // two more rounds
	if code, body := probe(t, health+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz after a later Prometheus outage: %d %q, want 200", code, body)
	}
	if exited, err := engine.Exited(); exited {
		t.Fatalf("the engine exited on a later Prometheus outage (%v); log %s", err, engine.LogPath())
	}
	if !strings.Contains(engineLog(t, engine), `"msg":"a precondition no longer holds`) {
		t.Errorf("the later outage was not logged; log %s", engine.LogPath())
	}
}

// apiProxy forwards to the sandbox's API server, with the engine's own
// credentials, and can hide Istio's API. It serves TLS: client-go sends a
// kubeconfig's credentials over TLS only.
type apiProxy struct {
	srv       *httptest.Server
	hideIstio atomic.Bool
}

func startAPIProxy(t *testing.T, sb *sandbox.Sandbox) *apiProxy {
	t.Helper()
	upstream, err := url.Parse(sb.RESTConfig.Host)
	if err != nil {
		t.Fatal(err)
	}
	// Trust, no credentials: the engine's token passes through.
	transport, err := rest.TransportFor(&rest.Config{Host: sb.RESTConfig.Host, TLSClientConfig: rest.TLSClientConfig{CAData: sb.RESTConfig.CAData, CAFile: sb.RESTConfig.CAFile}})
	if err != nil {
		t.Fatal(err)
	}
	p := &apiProxy{}
	rp := httputil.NewSingleHostReverseProxy(upstream)
	rp.Transport = transport
	rp.FlushInterval = -1 // watches stream
	p.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.hideIstio.Load() && strings.HasPrefix(r.URL.Path, "/apis/networking.istio.io") {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, `{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"the server could not find the requested resource","reason":"NotFound","details":{},"code":404}`)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	p.srv.StartTLS()
	t.Cleanup(p.srv.Close)
	return p
}

// kubeconfig is fledge's ServiceAccount's kubeconfig, pointed at the proxy.
func (p *apiProxy) kubeconfig(t *testing.T, sb *sandbox.Sandbox) string {
	t.Helper()
	path := sb.ServiceAccountKubeconfig(t, engineNamespace, "fledge")
	cfg, err := clientcmd.LoadFromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.srv.Certificate().Raw})
	for _, c := range cfg.Clusters {
		c.Server = p.srv.URL
		c.CertificateAuthority, c.CertificateAuthorityData = "", ca
	}
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// forwardOn serves a reverse proxy to target on addr until stop is called
// (or the test ends): before, and after, nothing listens there.
func forwardOn(t *testing.T, addr, target string) (stop func()) {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: httputil.NewSingleHostReverseProxy(u), ReadHeaderTimeout: 5 * time.Second}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(l) }()
	stop = func() { _ = srv.Close() }
	t.Cleanup(stop)
	return stop
}

// waitProbe polls url until it answers code with a body holding every
// want (and none of those written -text), failing the test (with the
// engine's state) after 30 s.
func waitProbe(t *testing.T, engine *sandbox.Process, url string, code int, want ...string) {
	t.Helper()
	var gotCode int
	var gotBody string
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		if exited, err := engine.Exited(); exited {
			return false, errors.Join(errors.New("the engine exited"), err)
		}
		gotCode, gotBody = probe(t, url)
		if gotCode != code {
			return false, nil
		}
		for _, w := range want {
			unwanted, isUnwanted := strings.CutPrefix(w, "-")
			if isUnwanted && strings.Contains(gotBody, unwanted) || !isUnwanted && !strings.Contains(gotBody, w) {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("%s: %v; last %d %q, want %d with %q; log %s", url, err, gotCode, gotBody, code, want, engine.LogPath())
	}
}

// probe returns url's status and body; 0 if nothing answers.
func probe(t *testing.T, url string) (int, string) {
	t.Helper()
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func engineLog(t *testing.T, p *sandbox.Process) string {
	t.Helper()
	b, err := os.ReadFile(p.LogPath())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
