//go:build e2e

package rollout_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/fledgehq/fledge/e2e/mesh"
	"github.com/fledgehq/fledge/rollout"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	fledgeengine "github.com/fledgehq/fledge/rollout/engine"
)

// Opting out is the way back from fledge, and must be safe at any moment:
// a team that removes the annotation mid-rollout gets plain Kubernetes
// behaviour back, with nothing left paused or half-routed.
func TestRemovingTheAnnotationMidRolloutGivesTheDeploymentBack(t *testing.T) {
	sb, ns := suite.Namespace(t)
	ctx := context.Background()
	startEngine(t, sb, ns, engineOptions{})
	shopApp(t, sb, ns, "fast", 200)

	rev := setImage(t, sb, ns, "shop", "example.com/shop:v2", nil)
	waitFlight(t, sb, ns, "shop", time.Minute, func(f *v1alpha1.Flight) bool {
		return f.Status.Phase == v1alpha1.PhaseProgressing && f.Status.CanaryWeight > 0
	})
	if sb.Mesh.WorkloadCounts(ns, "shop-canary").Requests == 0 {
		// Wait for proof that traffic is split before opting out, so
		// that restoring it is really tested.
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
			return sb.Mesh.WorkloadCounts(ns, "shop-canary").Requests > 0, nil
		})
		if err != nil {
			t.Fatal("the canary never served a request")
		}
	}
	optedOut := time.Now()
	patch := fmt.Appendf(nil, `[{"op":"remove","path":"/metadata/annotations/%s"}]`, strings.ReplaceAll(rollout.AnnotationRollout, "/", "~1"))
	if _, err := sb.Kube.AppsV1().Deployments(ns).Patch(ctx, "shop", types.JSONPatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}

	t.Run("the generated VirtualService is deleted and the mesh sends everything to stable", func(t *testing.T) {
		waitGone(t, "virtualservice shop", func(ctx context.Context) error {
			_, err := sb.Istio.NetworkingV1().VirtualServices(ns).Get(ctx, "shop", metav1.GetOptions{})
			return err
		})
		t.Logf("routing restored %s after the annotation was removed", time.Since(optedOut).Round(100*time.Millisecond))
		if err := sb.WaitMeshRoutes(ctx, ns, "shop", ""); err != nil {
			t.Fatalf("the mesh still routes with virtualservice %s/shop", ns)
		}
		for i := range 500 {
			resp := sb.Mesh.Route(mesh.Request{Client: "probe", SourceNamespace: ns, Host: "shop", User: fmt.Sprint(i)})
			if resp.Workload != "shop" {
				t.Fatalf("request %d for shop was answered %d %s by workload %q, want the stable shop (problems: %v)", i, resp.Code, resp.Flags, resp.Workload, sb.Mesh.Problems())
			}
		}
	})

	t.Run("the canary Deployment and Service are deleted", func(t *testing.T) {
		waitGone(t, "deployment shop-canary", func(ctx context.Context) error {
			_, err := sb.Kube.AppsV1().Deployments(ns).Get(ctx, "shop-canary", metav1.GetOptions{})
			return err
		})
		waitGone(t, "service shop-canary", func(ctx context.Context) error {
			_, err := sb.Kube.CoreV1().Services(ns).Get(ctx, "shop-canary", metav1.GetOptions{})
			return err
		})
	})

	t.Run("the Flight is gone", func(t *testing.T) {
		waitGone(t, "flight shop", func(ctx context.Context) error {
			_, err := getFlight(ctx, sb, ns, "shop")
			return err
		})
	})

	t.Run("the Deployment is unpaused and Kubernetes rolls it to its template", func(t *testing.T) {
		d, err := sb.WaitDeploymentAvailable(ctx, ns, "shop", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if d.Spec.Paused {
			t.Fatal("the Deployment is still paused")
		}
		sets, err := sb.Kube.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=shop"})
		if err != nil {
			t.Fatal(err)
		}
		for _, rs := range sets.Items {
			if running := rs.Status.Replicas > 0; running != (fledgeengine.TemplateHash(rs.Spec.Template) == rev) {
				t.Errorf("ReplicaSet %s (template %s) has %d replicas; want pods on %s only", rs.Name, fledgeengine.TemplateHash(rs.Spec.Template), rs.Status.Replicas, rev)
			}
		}
		// Nothing takes it over again behind the team's back.
		time.Sleep(2 * time.Second)
		if d, err = sb.Kube.AppsV1().Deployments(ns).Get(ctx, "shop", metav1.GetOptions{}); err != nil || d.Spec.Paused {
			t.Errorf("the Deployment 2s later: paused=%v (%v)", d.Spec.Paused, err)
		}
	})
}

// waitGone polls get until the object is not found.
func waitGone(t *testing.T, what string, get func(context.Context) error) {
	t.Helper()
	var last error
	err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, 20*time.Second, true, func(ctx context.Context) (bool, error) {
		last = get(ctx)
		return apierrors.IsNotFound(last), nil
	})
	if err != nil {
		t.Fatalf("%s still there after 20s (last get: %v)", what, last)
	}
}
