package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"
)

func TestTheLeaderLabelsItsPod(t *testing.T) {
	kube := fake.NewClientset(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "fledge-system", Name: "fledge-abc", Labels: map[string]string{"app": "fledge", LeaderLabel: "true"}}})
	p := podLabel{kube: kube, ns: "fledge-system", name: "fledge-abc", log: slog.New(slog.DiscardHandler)}
	ctx := context.Background()
	label := func() map[string]string {
		pod, err := kube.CoreV1().Pods("fledge-system").Get(ctx, "fledge-abc", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return pod.Labels
	}
	// At start, a label left "true" by the pod's previous container goes.
	if err := p.set(ctx, false); err != nil {
		t.Fatal(err)
	}
	if l := label(); l[LeaderLabel] != "false" || l["app"] != "fledge" {
		t.Errorf("labels %v, want %s=false and the others kept", l, LeaderLabel)
	}
	if err := p.set(ctx, true); err != nil {
		t.Fatal(err)
	}
	if l := label(); l[LeaderLabel] != "true" {
		t.Errorf("labels %v after leading, want %s=true", l, LeaderLabel)
	}
	// Not in a pod: nothing to label, and nothing asked.
	before := len(kube.Actions())
	if err := (podLabel{kube: kube, log: p.log}).set(ctx, true); err != nil || len(kube.Actions()) != before {
		t.Errorf("outside a pod: %v, %d calls", err, len(kube.Actions())-before)
	}
}

func TestALabelRefusedIsLoggedNotRetriedForever(t *testing.T) {
	kube := fake.NewClientset()
	calls := 0
	kube.PrependReactor("patch", "pods", func(clienttesting.Action) (bool, runtime.Object, error) {
		calls++
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "fledge-abc", errors.New("no RBAC"))
	})
	var logs bytes.Buffer
	p := podLabel{kube: kube, ns: "fledge-system", name: "fledge-abc", log: slog.New(slog.NewTextHandler(&logs, nil))}
	if err := p.set(context.Background(), true); !apierrors.IsForbidden(err) {
		t.Errorf("set = %v, want the refusal", err)
	}
	if calls != 1 {
		t.Errorf("%d patches, want 1: a refusal does not mend by retrying", calls)
	}
	if !strings.Contains(logs.String(), "cannot label this replica's pod fledge.dev/leader=true") || !strings.Contains(logs.String(), "patch pods") {
		t.Errorf("log %q: want the label and the permission it needs", logs.String())
	}
}
