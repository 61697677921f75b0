//go:build e2e

package analysis_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	promapi "github.com/prometheus/client_golang/api"
	networkingv1 "istio.io/api/networking/v1"
	istionetv1 "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fledgehq/fledge/analysis"
	"github.com/fledgehq/fledge/analysis/promclient"
	"github.com/fledgehq/fledge/e2e/mesh"
	"github.com/fledgehq/fledge/e2e/sandbox"
)

var suite = sandbox.Suite{Options: sandbox.Options{MeshSeed: 7}}

func TestMain(m *testing.M) { os.Exit(suite.Main(m)) }

const (
	// judgeTimeout bounds the wait for enough traffic to judge: a few
	// seconds of traffic and a scrape or two, on a busy two-core machine.
	judgeTimeout = 90 * time.Second
	// interval is the checks' look-back: short, for a quick test, yet ten
	// of Prometheus's one-second scrapes.
	interval = 10 * time.Second
)

// revision deploys one revision of an app, as fledge sees one: a
// Deployment named name whose pods behave as the annotations say, and a
// Service of the same name selecting only its pods. It waits until the
// Deployment is available.
func revision(t *testing.T, sb *sandbox.Sandbox, ns, name string, behaviour map[string]string) {
	t.Helper()
	sb.DeployApps(t, ns, sandbox.App{Name: name, Behaviour: behaviour})
}

// traffic sends rps requests per second to host from a client in ns until
// the test ends.
func traffic(t *testing.T, sb *sandbox.Sandbox, ns, host string, rps float64) {
	t.Helper()
	sb.SendTraffic(t, mesh.Client{Name: ns + "-" + host + "-client", Namespace: ns, Host: host, RPS: rps, Users: 200})
}

// split makes host's traffic go to Services by weight, and waits until the
// mesh routes with it.
func split(t *testing.T, sb *sandbox.Sandbox, ns, host string, weights map[string]int32) {
	t.Helper()
	ctx := context.Background()
	route := &networkingv1.HTTPRoute{}
	for dst, w := range weights {
		route.Route = append(route.Route, &networkingv1.HTTPRouteDestination{Destination: &networkingv1.Destination{Host: dst}, Weight: w})
	}
	vs := &istionetv1.VirtualService{
		ObjectMeta: metav1.ObjectMeta{Name: host, Namespace: ns},
		Spec:       networkingv1.VirtualService{Hosts: []string{host}, Http: []*networkingv1.HTTPRoute{route}},
	}
	vs, err := sb.Istio.NetworkingV1().VirtualServices(ns).Create(ctx, vs, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create virtualservice %s/%s: %v", ns, host, err)
	}
	if err := sb.WaitMeshRoutes(ctx, ns, host, vs.ResourceVersion); err != nil {
		t.Fatal(err)
	}
}

func prometheus(t *testing.T, sb *sandbox.Sandbox) *promclient.Client {
	t.Helper()
	p, err := promclient.New(promapi.Config{Address: sb.PrometheusURL}, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// judged evaluates m until there are enough samples to judge it, and
// returns that first judged check. Every check before it must be
// NotEnoughData: while traffic builds up that is the only right answer,
// and anything else (a premature pass, say) fails the test.
func judged(t *testing.T, q analysis.Querier, m analysis.Metric, vars analysis.Vars) analysis.Check {
	t.Helper()
	if err := analysis.Validate(m); err != nil {
		t.Fatalf("metric %s: %v", m.Name, err)
	}
	deadline := time.Now().Add(judgeTimeout)
	for {
		c := analysis.Evaluate(context.Background(), q, m, vars, time.Now())
		if c.Outcome != analysis.NotEnoughData {
			t.Logf("%s of %s: %s", m.Name, vars.Workload, describe(c))
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s of %s: still not enough data after %s: %s", m.Name, vars.Workload, judgeTimeout, describe(c))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func describe(c analysis.Check) string {
	value := "none"
	if c.Value != nil {
		value = fmt.Sprintf("%.4g", *c.Value)
	}
	return fmt.Sprintf("%s (value %s, threshold %s, %d samples) %s", c.Outcome, value, c.Threshold, c.Samples, c.Message)
}

func within(t *testing.T, what string, c analysis.Check, low, high float64) {
	t.Helper()
	if c.Value == nil || *c.Value < low || *c.Value > high {
		t.Errorf("%s: %s; want a value in [%g, %g]", what, describe(c), low, high)
	}
}

func wantOutcome(t *testing.T, what string, c analysis.Check, want analysis.Outcome) {
	t.Helper()
	if c.Outcome != want {
		t.Errorf("%s: %s; want %s", what, describe(c), want)
	}
}
