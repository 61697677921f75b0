//go:build e2e

package rollout_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	authzv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/fledgehq/fledge/e2e/sandbox"
	"github.com/fledgehq/fledge/rollout"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
)

// fledge acts only in the namespaces it is given, and may act only where a
// namespace's RoleBinding (deploy/rbac-namespace.yaml) lets it: one engine
// is given two namespaces, shop (bound) and cart (not bound yet); a third,
// other, is neither. shop is adopted; cart waits with a message that says
// how to end the wait, and is adopted within a retry once bound; other's
// opted-in Deployment is never touched, and fledge's ServiceAccount may
// not even read it.
func TestAnEngineActsOnlyInTheNamespacesItIsGiven(t *testing.T) {
	sb, shop := suite.Namespace(t)
	cart, other := sb.Namespace(t), sb.Namespace(t)
	ctx := context.Background()
	e := startEngine(t, sb, shop, engineOptions{Args: []string{"--namespaces=" + shop + "," + cart, "--namespace-retry=2s"}})

	for _, ns := range []string{cart, other} {
		t.Cleanup(func() { dumpOnFailure(t, sb, ns) })
		sb.CreateApp(t, ns, appOf("shop", map[string]string{rollout.AnnotationRollout: "fast"}, nil))
	}
	shopApp(t, sb, shop, "fast", 0)

	// cart: listed, not bound. Nothing happens there, and the engine says
	// what would end the wait.
	want := fmt.Sprintf("fledge may not list deployments in namespace %s: bind the ClusterRole fledge there (kubectl -n %s apply -f deploy/rbac-namespace.yaml)", cart, cart)
	waitLog(t, e, want)
	watched := func(ns string) float64 {
		return scrapeCounters(t, e.MetricsAddr)[fmt.Sprintf("fledge_namespace_watched{namespace=%q}", ns)]
	}
	if got := watched(shop); got != 1 {
		t.Errorf("fledge_namespace_watched for %s = %v, want 1", shop, got)
	}
	if got := watched(cart); got != 0 {
		t.Errorf("fledge_namespace_watched for %s = %v, want 0", cart, got)
	}
	untouched(t, sb, cart)

	// Once bound, cart is adopted within a retry.
	if err := bindNamespace(sb, cart); err != nil {
		t.Fatal(err)
	}
	waitFlight(t, sb, cart, "shop", time.Minute, func(f *v1alpha1.Flight) bool { return f.Status.Phase == v1alpha1.PhaseIdle })
	if got := watched(cart); got != 1 {
		t.Errorf("fledge_namespace_watched for %s once bound = %v, want 1", cart, got)
	}

	// other: never given to the engine, never touched; fledge's
	// ServiceAccount may neither read nor write there.
	untouched(t, sb, other)
	for _, verb := range []string{"list", "patch", "delete"} {
		review, err := sb.Kube.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
			User:               "system:serviceaccount:" + engineNamespace + ":fledge",
			ResourceAttributes: &authzv1.ResourceAttributes{Namespace: other, Verb: verb, Group: "apps", Resource: "deployments"},
		}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if review.Status.Allowed {
			t.Errorf("fledge may %s Deployments in %s, a namespace that never bound it", verb, other)
		}
	}
}

// untouched checks that fledge made no Flight for ns's opted-in "shop" and
// did not pause it.
func untouched(t *testing.T, sb *sandbox.Sandbox, ns string) {
	t.Helper()
	time.Sleep(2 * time.Second) // a few looks' time
	if _, err := getFlight(context.Background(), sb, ns, "shop"); !apierrors.IsNotFound(err) {
		t.Errorf("%s/shop has a Flight (%v): fledge acted in a namespace it may not", ns, err)
	}
	d, err := sb.Kube.AppsV1().Deployments(ns).Get(context.Background(), "shop", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Spec.Paused {
		t.Errorf("%s/shop was paused: fledge acted in a namespace it may not", ns)
	}
}

// waitLog waits until the engine's log has a line containing want.
func waitLog(t *testing.T, e *engine, want string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		log, err := os.ReadFile(e.LogPath())
		return err == nil && strings.Contains(string(log), want), nil
	})
	if err != nil {
		t.Fatalf("the engine's log never said %q (log %s)", want, e.LogPath())
	}
}
