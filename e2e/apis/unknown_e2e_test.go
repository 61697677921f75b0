//go:build e2e

package apis_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes/fake"
	"sigs.k8s.io/yaml"

	"github.com/fledgehq/fledge/e2e/sandbox"
	"github.com/fledgehq/fledge/rollout"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	"github.com/fledgehq/fledge/rollout/engine"
	"github.com/fledgehq/fledge/traffic"
)

// During a rolling upgrade two versions of fledge take turns as leader. A
// status field the newer one writes (and its CRD lists) must survive the
// older one's writes, or the two erase each other's state. The CRD here
// gains status.futureField, as a newer fledge's would; this binary's
// executor, which does not know the field, writes the status, and the
// field is still there. The write is also conditioned on the Flight as
// read: from a stale read it is a conflict.
func TestAStatusFieldThisVersionDoesNotKnowSurvivesItsWrites(t *testing.T) {
	sb := suite.Get(t)
	ctx := context.Background()
	const original = "../../deploy/crds/flights.fledge.dev.yaml"
	t.Cleanup(func() {
		if err := sandbox.ApplyCRDs(context.Background(), sb.Dynamic, original); err != nil {
			t.Errorf("restoring the CRD: %v", err)
		}
	})
	if err := sandbox.ApplyCRDs(ctx, sb.Dynamic, withFutureField(t, original)); err != nil {
		t.Fatal(err)
	}
	ns := sb.Namespace(t)
	typed := sb.Fledge.FledgeV1alpha1().Flights(ns)
	raw := sb.Dynamic.Resource(v1alpha1.FlightResource).Namespace(ns)
	f, err := typed.Create(ctx, &v1alpha1.Flight{ObjectMeta: metav1.ObjectMeta{Name: "shop"},
		Spec: v1alpha1.FlightSpec{Deployment: "shop", Policy: "standard", Host: "shop", StableService: "shop"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f.Status = v1alpha1.FlightStatus{Phase: v1alpha1.PhaseIdle, StableRevision: "r1", Message: "holding"}
	if _, err := typed.UpdateStatus(ctx, f, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The newer version's write; the API server prunes it until the new
	// schema is in force.
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		if _, err := raw.Patch(ctx, "shop", types.MergePatchType, []byte(`{"status":{"futureField":"kept"}}`), metav1.PatchOptions{}, "status"); err != nil {
			return false, err
		}
		return futureField(t, raw) == "kept", nil
	})
	if err != nil {
		t.Fatalf("the CRD with status.futureField never kept it: %v", err)
	}

	read, err := typed.Get(ctx, "shop", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	x := &engine.Executor{Kube: fake.NewClientset(), Flights: sb.Fledge.FledgeV1alpha1()}
	next := *read.Status.DeepCopy()
	next.Message = "changed by a version that does not know futureField"
	s := engine.Subject{Flight: read, Target: traffic.Target{Namespace: ns, Name: "shop"}}
	if _, err := x.Apply(ctx, s, rollout.Decision{Status: next}); err != nil {
		t.Fatal(err)
	}
	got, err := typed.Get(ctx, "shop", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Status.Message != next.Message {
		t.Errorf("message %q, want the executor's write", got.Status.Message)
	}
	if v := futureField(t, raw); v != "kept" {
		t.Errorf("status.futureField %q after the write, want %q: the older version erased the newer one's state", v, "kept")
	}

	// From the read before that write: refused, nothing written.
	next.Message = "from a stale read"
	if _, err := x.Apply(ctx, s, rollout.Decision{Status: next}); !apierrors.IsConflict(err) {
		t.Errorf("a write from a stale read: %v, want a conflict", err)
	}

	// What fledge did before (a whole-status update of the typed Flight)
	// loses the field: the case this test is for.
	got.Status.Message = "whole update"
	if _, err := typed.UpdateStatus(ctx, got, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if v := futureField(t, raw); v != "" {
		t.Errorf("a whole-status update kept futureField %q: this test no longer shows what it is for", v)
	}
}

// withFutureField writes a copy of the CRD whose status schema also lists
// futureField (a string), and returns its path.
func withFutureField(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var crd map[string]any
	if err := yaml.Unmarshal(data, &crd); err != nil {
		t.Fatal(err)
	}
	versions, _, _ := unstructured.NestedSlice(crd, "spec", "versions")
	for i := range versions {
		v := versions[i].(map[string]any)
		if err := unstructured.SetNestedField(v, map[string]any{"type": "string"}, "schema", "openAPIV3Schema", "properties", "status", "properties", "futureField"); err != nil {
			t.Fatal(err)
		}
	}
	if err := unstructured.SetNestedSlice(crd, versions, "spec", "versions"); err != nil {
		t.Fatal(err)
	}
	out, err := yaml.Marshal(crd)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "flights.yaml")
	if err := os.WriteFile(file, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

func futureField(t *testing.T, raw interface {
	Get(context.Context, string, metav1.GetOptions, ...string) (*unstructured.Unstructured, error)
}) string {
	t.Helper()
	obj, err := raw.Get(context.Background(), "shop", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	v, _, _ := unstructured.NestedString(obj.Object, "status", "futureField")
	return v
}
