//go:build e2e

package rollout_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	fledgeengine "github.com/fledgehq/fledge/rollout/engine"
)

// The way out before uninstalling fledge: `fledge --release-all` gives
// every Deployment back, one mid-rollout and one at rest alike (plain
// routing, canaries deleted, unpaused, Flights and their finalizers gone,
// so nothing stays paused and no namespace deletion is blocked), then
// exits 0.
func TestReleaseAllGivesEveryDeploymentBackBeforeAnUninstall(t *testing.T) {
	sb, ns := suite.Namespace(t)
	ctx := context.Background()
	e := startEngine(t, sb, ns, engineOptions{Policies: slowPolicies})
	shopApp(t, sb, ns, "slow", 50)
	createAnnotatedApp(t, sb, ns, "cart", map[string]string{"fledge.dev/rollout": "slow"}, 0)
	waitFlight(t, sb, ns, "cart", time.Minute, func(f *v1alpha1.Flight) bool { return f.Status.Phase == v1alpha1.PhaseIdle })
	startCanary(t, sb, ns, "example.com/shop:v2")
	if err := e.proc.Stop(); err != nil {
		t.Fatal(err)
	}
	e.proc = nil

	release := *e
	release.name = ns + "-release-all"
	release.args = append(append([]string{}, e.args...), "--release-all", "--identity=release-all")
	release.Start()
	select {
	case <-release.proc.Done():
	case <-time.After(90 * time.Second):
		t.Fatal("fledge --release-all still running after 90s")
	}
	if _, err := release.proc.Exited(); err != nil {
		log, _ := os.ReadFile(release.LogPath())
		t.Fatalf("fledge --release-all: %v\n%s", err, log)
	}

	for _, name := range []string{"shop", "cart"} {
		d, err := sb.Kube.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if d.Spec.Paused {
			t.Errorf("deployment %s is still paused", name)
		}
		if _, err := getFlight(ctx, sb, ns, name); !apierrors.IsNotFound(err) {
			t.Errorf("flight %s: %v, want gone (finalizer removed)", name, err)
		}
		if _, err := sb.Istio.NetworkingV1().VirtualServices(ns).Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("virtualservice %s: %v, want gone (plain routing)", name, err)
		}
		waitGone(t, "deployment "+name+fledgeengine.CanarySuffix, func(ctx context.Context) error {
			_, err := sb.Kube.AppsV1().Deployments(ns).Get(ctx, name+fledgeengine.CanarySuffix, metav1.GetOptions{})
			return err
		})
	}
	log, _ := os.ReadFile(release.LogPath())
	if !strings.Contains(string(log), "released every Flight") {
		t.Errorf("the log does not say what was released:\n%s", log)
	}
}
