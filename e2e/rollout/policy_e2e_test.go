//go:build e2e

package rollout_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"

	"github.com/fledgehq/fledge/rollout"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	fledgeengine "github.com/fledgehq/fledge/rollout/engine"
)

// The policy file is followed while the engine runs: a policy added by the
// platform team takes effect without a restart, and a broken edit is
// rejected whole, leaving the policies in force unchanged.
func TestPolicyFileChangesTakeEffectWithoutARestart(t *testing.T) {
	sb, ns := suite.Namespace(t)
	ctx := context.Background()
	e := startEngine(t, sb, ns, engineOptions{})
	policyFile := ""
	for _, a := range e.args {
		if v, ok := strings.CutPrefix(a, "--policies="); ok {
			policyFile = v
		}
	}
	sb.CreateApp(t, ns, appOf("shop", map[string]string{rollout.AnnotationRollout: "team-b"}, nil))
	waitFlight(t, sb, ns, "shop", time.Minute, func(f *v1alpha1.Flight) bool {
		c := meta.FindStatusCondition(f.Status.Conditions, "Valid")
		return c != nil && c.Status == metav1.ConditionFalse && strings.Contains(c.Message, `no policy "team-b"`)
	})

	// A broken edit (a step of 100) is rejected: team-b stays unknown and
	// fast keeps working.
	broken := fastPolicies + "  team-b:\n    steps: [50, 100]\n    metrics: [{name: success-rate, min: 0.9}]\n"
	writeFileAtomically(t, policyFile, broken)
	time.Sleep(3 * time.Second) // the engine polls every 2 s
	f, err := getFlight(ctx, sb, ns, "shop")
	if err != nil {
		t.Fatal(err)
	}
	if f.Status.Phase != "" {
		t.Fatalf("a rejected policy file took effect: phase %s", f.Status.Phase)
	}

	// Fixed: the Deployment is taken over.
	writeFileAtomically(t, policyFile, fastPolicies+"  team-b:\n    steps: [50]\n    interval: 5s\n    minInterval: 1s\n    metrics: [{name: success-rate, min: 0.9}]\n")
	f = waitFlight(t, sb, ns, "shop", 30*time.Second, func(f *v1alpha1.Flight) bool { return f.Status.Phase == v1alpha1.PhaseIdle })
	if c := meta.FindStatusCondition(f.Status.Conditions, "Valid"); c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("Valid condition after the fix: %+v", c)
	}
}

// writeFileAtomically replaces a file the way a ConfigMap volume does: a
// new file renamed over the old, so a reader never sees half of it.
func writeFileAtomically(t *testing.T, path, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// A canary that never becomes ready (here: it cannot be scheduled) is
// rolled back at the policy's progress deadline; no traffic ever reaches it.
func TestACanaryThatNeverBecomesReadyIsRolledBackAtTheDeadline(t *testing.T) {
	sb, ns := suite.Namespace(t)
	ctx := context.Background()
	startEngine(t, sb, ns, engineOptions{Policies: `
policies:
  deadline:
    steps: [20, 50]
    interval: 5s
    minInterval: 1s
    progressDeadline: 8s
    metrics:
    - {name: success-rate, min: 0.9, minSamples: 10}
`})
	shopApp(t, sb, ns, "deadline", 100)
	// A template asking for more CPU than any node has: its pods stay
	// Pending, as with a bad image or a missing secret in a real cluster.
	// (Read again on a conflict: the Deployment controller writes its
	// status meanwhile.)
	var d *appsv1.Deployment
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := sb.Kube.AppsV1().Deployments(ns).Get(ctx, "shop", metav1.GetOptions{})
		if err != nil {
			return err
		}
		cur.Spec.Template.Spec.Containers[0].Image = "example.com/shop:huge"
		cur.Spec.Template.Spec.Containers[0].Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1000")}
		d, err = sb.Kube.AppsV1().Deployments(ns).Update(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	rev := fledgeengine.TemplateHash(d.Spec.Template)
	began := time.Now()
	f := waitFlight(t, sb, ns, "shop", time.Minute, func(f *v1alpha1.Flight) bool { return f.Status.RejectedRevision == rev })
	if f.Status.Phase != v1alpha1.PhaseRolledBack || !strings.Contains(f.Status.Message, "progress deadline") {
		t.Fatalf("phase %s, message %q; want a rollback at the progress deadline", f.Status.Phase, f.Status.Message)
	}
	t.Logf("rolled back %s after the new template: %s", time.Since(began).Round(time.Second), f.Status.Message)
	if n := sb.Mesh.WorkloadCounts(ns, "shop-canary").Requests; n != 0 {
		t.Errorf("the canary that never became ready served %d requests", n)
	}
	assertSettled(t, sb, ns)
}
