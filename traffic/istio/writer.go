package istio

import (
	"context"
	"fmt"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fledgehq/fledge/traffic"
)

// LastWriter names whoever last changed the spec of t's VirtualService,
// other than fledge, from its managedFields: the manager whose entry
// owning spec fields is the newest, e.g. "argocd-controller (Update at
// 12:00:03 UTC)". Empty when the VirtualService is gone or only fledge
// wrote its spec.
func (r *Router) LastWriter(ctx context.Context, t traffic.Target) (string, error) {
	name := t.Name
	if t.VirtualService != "" {
		name = t.VirtualService
	}
	vs, err := r.client.NetworkingV1().VirtualServices(t.Namespace).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "", nil
	}
	if err != nil {
		return "", errorIn(t.Namespace, name, "get", err)
	}
	return lastWriter(vs.ManagedFields), nil
}

func lastWriter(entries []metav1.ManagedFieldsEntry) string {
	var last *metav1.ManagedFieldsEntry
	for i := range entries {
		e := &entries[i]
		if e.Manager == traffic.FieldManager || e.Subresource != "" || e.FieldsV1 == nil || !strings.Contains(string(e.FieldsV1.Raw), `"f:spec"`) {
			continue
		}
		if last == nil || e.Time != nil && (last.Time == nil || last.Time.Before(e.Time)) {
			last = e
		}
	}
	if last == nil {
		return ""
	}
	if last.Time == nil {
		return fmt.Sprintf("%q (%s)", last.Manager, last.Operation)
	}
	return fmt.Sprintf("%q (%s at %s)", last.Manager, last.Operation, last.Time.UTC().Format("15:04:05 MST"))
}
