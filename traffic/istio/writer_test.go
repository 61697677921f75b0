package istio

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fledgehq/fledge/traffic"
)

func TestLastWriterIsTheNewestOtherManagerOfTheSpec(t *testing.T) {
	at := func(s int) *metav1.Time { t := metav1.NewTime(time.Date(2026, 1, 1, 12, 0, s, 0, time.UTC)); return &t }
	spec := &metav1.FieldsV1{Raw: []byte(`{"f:spec":{"f:http":{}}}`)}
	meta := &metav1.FieldsV1{Raw: []byte(`{"f:metadata":{"f:labels":{}}}`)}
	entries := []metav1.ManagedFieldsEntry{
		{Manager: "kubectl-client-side-apply", Operation: metav1.ManagedFieldsOperationUpdate, Time: at(1), FieldsV1: spec},
		{Manager: "argocd-controller", Operation: metav1.ManagedFieldsOperationApply, Time: at(3), FieldsV1: spec},
		{Manager: traffic.FieldManager, Operation: metav1.ManagedFieldsOperationUpdate, Time: at(5), FieldsV1: spec},
		{Manager: "labeller", Operation: metav1.ManagedFieldsOperationUpdate, Time: at(9), FieldsV1: meta},
	}
	if got, want := lastWriter(entries), `"argocd-controller" (Apply at 12:00:03 UTC)`; got != want {
		t.Errorf("last writer %s, want %s (fledge's own and metadata-only writes do not count)", got, want)
	}
	if got := lastWriter(entries[2:]); got != "" {
		t.Errorf("only fledge wrote the spec: %q, want none", got)
	}
}
