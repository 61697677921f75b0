package engine

import (
	"context"
	"log/slog"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	fledgefake "github.com/fledgehq/fledge/rollout/client/clientset/versioned/fake"
)

// A Flight's looks go to the lane of where it stands: take-overs to the
// adoptions', revisions rolled out (or back, or a Flight released) to the
// Flights' in flight, and the rest, where a new revision starts, to the
// Flights' at rest; so that a canary's first weight never waits behind
// other Deployments' starts.
func TestLooksGoToTheLaneOfWhereTheFlightStands(t *testing.T) {
	flight := func(name string, phase v1alpha1.Phase, deleted bool) *v1alpha1.Flight {
		f := &v1alpha1.Flight{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name}, Status: v1alpha1.FlightStatus{Phase: phase}}
		if deleted {
			f.DeletionTimestamp, f.Finalizers = &metav1.Time{Time: start}, []string{"fledge.dev/release"}
		}
		return f
	}
	fl := fledgefake.NewSimpleClientset(
		flight("init", v1alpha1.PhaseInitializing, false), flight("idle", v1alpha1.PhaseIdle, false),
		flight("rolling", v1alpha1.PhaseProgressing, false), flight("paused", v1alpha1.PhasePaused, false),
		flight("promoting", v1alpha1.PhasePromoting, false), flight("back", v1alpha1.PhaseRollingBack, false),
		flight("done", v1alpha1.PhaseSucceeded, false), flight("rolledback", v1alpha1.PhaseRolledBack, false),
		flight("aborted", v1alpha1.PhaseAborted, false), flight("released", v1alpha1.PhaseIdle, true),
	)
	c := NewController(ControllerConfig{Kube: fake.NewClientset(optedIn("shop")), Fledge: fl, Namespaces: []string{"shop"}, Logger: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	lanes := map[string]any{"adoptions": c.adoptions, "in flight": c.queue, "at rest": c.resting}
	for name, want := range map[string]string{
		"web": "adoptions", "init": "adoptions",
		"rolling": "in flight", "paused": "in flight", "promoting": "in flight", "back": "in flight", "released": "in flight",
		"idle": "at rest", "done": "at rest", "rolledback": "at rest", "aborted": "at rest",
	} {
		if got := c.laneOf("shop", name); got != lanes[want] {
			for lane, q := range lanes {
				if q == got {
					t.Errorf("%s: lane %s, want %s", name, lane, want)
				}
			}
		}
	}
}
