package engine

import (
	"context"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/fledgehq/fledge/rollout"
	"github.com/fledgehq/fledge/traffic"
)

// A Deployment read unpaused from before fledge's own last pause of it
// (the cache trails the write) is not someone else's resume; read from
// after it, it is.
func TestAnUnpausedReadOlderThanFledgesPauseIsNotAResume(t *testing.T) {
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", ResourceVersion: "100"}}
	var o ownPauses
	if o.predates(d) {
		t.Error("a read predates a pause never written")
	}
	mine := d.DeepCopy()
	mine.ResourceVersion = "105"
	o.wrote(mine)
	if !o.predates(d) {
		t.Error("version 100 does not predate the pause written at 105")
	}
	for _, rv := range []string{"105", "110"} {
		d.ResourceVersion = rv
		if o.predates(d) {
			t.Errorf("version %s predates the pause written at 105", rv)
		}
	}
	d.ResourceVersion = "not-a-number"
	if o.predates(d) {
		t.Error("a version that does not compare is taken as older")
	}
	o.forget("shop/web")
	d.ResourceVersion = "1"
	if o.predates(d) {
		t.Error("a forgotten pause still counts")
	}
}

// fledge pauses and resumes as its own field manager, so that its writes of
// spec.paused are told apart from anyone else's.
func TestThePausePatchIsFledges(t *testing.T) {
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", ResourceVersion: "7"}}
	kube := fake.NewClientset(d)
	x := &Executor{Kube: kube}
	if err := x.apply(context.Background(), Subject{Deployment: d, Target: traffic.Target{Namespace: "shop", Name: "web"}}, rollout.SetStablePaused{Paused: true}); err != nil {
		t.Fatal(err)
	}
	var patches int
	for _, a := range kube.Actions() {
		if p, ok := a.(k8stesting.PatchActionImpl); ok {
			patches++
			if p.PatchOptions.FieldManager != traffic.FieldManager {
				t.Errorf("the pause patch's field manager is %q, want %q", p.PatchOptions.FieldManager, traffic.FieldManager)
			}
		}
	}
	if patches != 1 {
		t.Errorf("%d patches, want 1", patches)
	}
	if !x.pauses.predates(&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", ResourceVersion: "6"}}) {
		t.Error("the pause written is not remembered")
	}
}
