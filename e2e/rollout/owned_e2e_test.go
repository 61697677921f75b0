//go:build e2e

package rollout_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/fledgehq/fledge/rollout"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
)

// A team already runs its own Deployment and Service "shop-canary" (the
// names fledge gives shop's canary). Opting shop in must not scale them
// down, a new revision must hold with a reason that names them instead of
// rewriting them, and opting out must not delete them.
func TestACanaryNameATeamAlreadyUsesIsNeverTouched(t *testing.T) {
	sb, ns := suite.Namespace(t)
	ctx := context.Background()
	startEngine(t, sb, ns, engineOptions{})
	theirs := sb.CreateApp(t, ns, appOf("shop-canary", nil, nil))
	theirSvc, err := sb.Kube.CoreV1().Services(ns).Get(ctx, "shop-canary", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	unchanged := func(when string) {
		t.Helper()
		d, err := sb.Kube.AppsV1().Deployments(ns).Get(ctx, "shop-canary", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("%s: the team's Deployment: %v", when, err)
		}
		if d.UID != theirs.UID || d.Generation != theirs.Generation || *d.Spec.Replicas != *theirs.Spec.Replicas {
			t.Errorf("%s: the team's Deployment changed: uid %s generation %d replicas %d, want %s, %d, %d",
				when, d.UID, d.Generation, *d.Spec.Replicas, theirs.UID, theirs.Generation, *theirs.Spec.Replicas)
		}
		s, err := sb.Kube.CoreV1().Services(ns).Get(ctx, "shop-canary", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("%s: the team's Service: %v", when, err)
		}
		if s.UID != theirSvc.UID || s.ResourceVersion != theirSvc.ResourceVersion {
			t.Errorf("%s: the team's Service was written (resourceVersion %s, want %s)", when, s.ResourceVersion, theirSvc.ResourceVersion)
		}
	}

	shopApp(t, sb, ns, "fast", 20)
	time.Sleep(2 * time.Second) // a few looks at rest
	unchanged("after opting in")

	rev := setImage(t, sb, ns, "shop", "example.com/shop:v2", nil)
	f := waitFlight(t, sb, ns, "shop", time.Minute, func(f *v1alpha1.Flight) bool {
		return f.Status.Hold != nil && f.Status.Hold.Reason == v1alpha1.HoldNameTaken
	})
	if want := fmt.Sprintf("%s/shop-canary exists and is not fledge's", ns); !strings.Contains(f.Status.Hold.Message, want) {
		t.Errorf("hold %q does not say %q", f.Status.Hold.Message, want)
	}
	if f.Status.Phase == v1alpha1.PhaseProgressing || f.Status.CanaryWeight != 0 {
		t.Errorf("revision %s: phase %s at %d%%, want no canary while the name is taken", rev, f.Status.Phase, f.Status.CanaryWeight)
	}
	time.Sleep(2 * time.Second)
	unchanged("while the new revision waits")

	patch := fmt.Appendf(nil, `[{"op":"remove","path":"/metadata/annotations/%s"}]`, strings.ReplaceAll(rollout.AnnotationRollout, "/", "~1"))
	if _, err := sb.Kube.AppsV1().Deployments(ns).Patch(ctx, "shop", types.JSONPatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	waitGone(t, "flight shop", func(ctx context.Context) error {
		_, err := getFlight(ctx, sb, ns, "shop")
		return err
	})
	unchanged("after opting out")
}
