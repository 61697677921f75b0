package sandbox

import (
	"context"
	"fmt"
	"testing"
	"time"

	istionetv1 "istio.io/client-go/pkg/apis/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
)

// WaitMeshRoutes waits until the mesh routes with version resourceVersion
// of the VirtualService ns/name, or without that VirtualService when
// resourceVersion is "" (deleted, or never made). The emulator rebuilds its
// routing table a moment after a change, so a test that wrote a
// VirtualService and then sends requests waits here first.
func (s *Sandbox) WaitMeshRoutes(ctx context.Context, ns, name, resourceVersion string) error {
	err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		return s.Mesh.AppliedVersion("VirtualService", ns, name) == resourceVersion, nil
	})
	if err != nil {
		return fmt.Errorf("virtualservice %s/%s at version %q never reached the mesh: %w (problems: %v)", ns, name, resourceVersion, err, s.Mesh.Problems())
	}
	return nil
}

// StoredVirtualService reads the VirtualService ns/name as the API server
// stores it, through the dynamic client, so that no field escapes a typed
// client's decoding: what a GitOps tool compares with Git.
func (s *Sandbox) StoredVirtualService(t testing.TB, ns, name string) map[string]any {
	t.Helper()
	gvr := istionetv1.SchemeGroupVersion.WithResource("virtualservices")
	u, err := s.Dynamic.Resource(gvr).Namespace(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get virtualservice %s/%s: %v", ns, name, err)
	}
	return u.Object
}

// ComparableObject is a copy of a stored object without what the API
// server changes on every write (resourceVersion, generation,
// managedFields), for comparing two versions of it.
func ComparableObject(obj map[string]any) map[string]any {
	out := (&unstructured.Unstructured{Object: obj}).DeepCopy().Object
	for _, f := range []string{"resourceVersion", "generation", "managedFields"} {
		unstructured.RemoveNestedField(out, "metadata", f)
	}
	return out
}

// WithoutHTTPRoute is ComparableObject(obj), a stored VirtualService,
// without spec.http[i].route: the one field of a team's VirtualService
// that fledge may change.
func WithoutHTTPRoute(t testing.TB, obj map[string]any, i int) map[string]any {
	t.Helper()
	out := ComparableObject(obj)
	http, _, err := unstructured.NestedSlice(out, "spec", "http")
	if err != nil || len(http) <= i {
		t.Fatalf("spec.http of the stored object: %v (%d routes)", err, len(http))
	}
	delete(http[i].(map[string]any), "route")
	if err := unstructured.SetNestedSlice(out, http, "spec", "http"); err != nil {
		t.Fatal(err)
	}
	return out
}
