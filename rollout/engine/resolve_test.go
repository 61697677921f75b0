package engine

import (
	"fmt"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fledgehq/fledge/rollout"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
)

type policyMap map[string]*rollout.Policy

func (m policyMap) Get(name string) (*rollout.Policy, error) {
	if p, ok := m[name]; ok {
		return p, nil
	}
	return nil, fmt.Errorf("no policy %s", rollout.Bounded(name))
}

func resolving(t *testing.T) *Controller {
	t.Helper()
	ps, err := rollout.ParseConfig([]byte(`
policies:
  strict:
    steps: [10, 20, 50]
    interval: 30s
    minInterval: 2s
    metrics: [{name: success-rate, min: 0.99, minSamples: 10}]
  other:
    steps: [5, 50]
    metrics: [{name: success-rate, min: 0.9, minSamples: 10}]
`))
	if err != nil {
		t.Fatal(err)
	}
	return &Controller{policies: policyMap(ps)}
}

func annotated(a map[string]string) *appsv1.Deployment {
	return &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "shop", Namespace: "demo", Annotations: a}}
}

// A bad field is refused, not the rollout: a Flight fledge has taken over
// keeps being judged under the values last accepted for the bad fields,
// and takes the good ones; the error names each bad annotation.
func TestABadAnnotationMidRolloutKeepsTheLastValidSettings(t *testing.T) {
	c := resolving(t)
	flying := &v1alpha1.Flight{
		Spec:   v1alpha1.FlightSpec{Policy: "strict", Overrides: v1alpha1.FlightOverrides{Interval: "10s", StepWeights: "10,20"}},
		Status: v1alpha1.FlightStatus{Phase: v1alpha1.PhaseProgressing},
	}
	for _, tc := range []struct {
		name       string
		annotation map[string]string
		wantErr    []string // empty: valid
		steps      []int32
		interval   time.Duration
	}{
		{"an interval PromQL cannot carry (2500ms)", map[string]string{rollout.AnnotationInterval: "2500ms", rollout.AnnotationStepWeights: "10,20"},
			[]string{"annotation fledge.dev/interval", "whole number of seconds"}, []int32{10, 20}, 10 * time.Second},
		{"2.5s too", map[string]string{rollout.AnnotationInterval: "2.5s"}, []string{"annotation fledge.dev/interval"}, []int32{10, 20, 50}, 10 * time.Second},
		{"1h0.5s too", map[string]string{rollout.AnnotationInterval: "1h0.5s"}, []string{"annotation fledge.dev/interval"}, []int32{10, 20, 50}, 10 * time.Second},
		{"a bad interval beside new good steps", map[string]string{rollout.AnnotationInterval: "soon", rollout.AnnotationStepWeights: "20,50"},
			[]string{"annotation fledge.dev/interval"}, []int32{20, 50}, 10 * time.Second},
		{"steps above the policy's largest: the last accepted overrides whole", map[string]string{rollout.AnnotationStepWeights: "10,80", rollout.AnnotationInterval: "20s"},
			[]string{"annotation fledge.dev/step-weights", "above the largest step"}, []int32{10, 20}, 10 * time.Second},
		{"a policy that does not exist: the last one", map[string]string{rollout.AnnotationRollout: "strikt"},
			[]string{"annotation fledge.dev/rollout", `no policy "strikt"`}, []int32{10, 20, 50}, 30 * time.Second},
		{"a typo in a key", map[string]string{rollout.AnnotationInterval: "20s", "fledge.dev/step-weight": "5,10"},
			[]string{"annotation fledge.dev/step-weight:", "did you mean fledge.dev/step-weights?"}, []int32{10, 20, 50}, 20 * time.Second},
		{"all valid", map[string]string{rollout.AnnotationInterval: "20s", rollout.AnnotationMaxWeight: "20"}, nil, []int32{10, 20}, 20 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := map[string]string{rollout.AnnotationRollout: "strict"}
			for k, v := range tc.annotation {
				a[k] = v
			}
			spec, p, err := c.resolve(annotated(a), flying)
			if p == nil {
				t.Fatalf("no policy (%v): want the rollout judged under the last valid settings", err)
			}
			if len(tc.wantErr) == 0 && err != nil {
				t.Errorf("error %v, want none", err)
			}
			for _, want := range tc.wantErr {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("error %v, want it to say %q", err, want)
				}
			}
			if fmt.Sprint(p.Steps) != fmt.Sprint(tc.steps) || p.Interval != tc.interval {
				t.Errorf("judged under steps %v, interval %s; want %v, %s", p.Steps, p.Interval, tc.steps, tc.interval)
			}
			// What is recorded as accepted is what is in force.
			again, q, _ := c.resolve(annotated(map[string]string{rollout.AnnotationRollout: spec.Policy, rollout.AnnotationInterval: spec.Overrides.Interval}),
				&v1alpha1.Flight{Spec: spec, Status: flying.Status})
			if q == nil || q.Interval != p.Interval || again.Overrides.Interval != spec.Overrides.Interval {
				t.Errorf("recorded overrides %+v do not give the interval in force", spec.Overrides)
			}
		})
	}
}

// A Deployment never taken over has no settings to fall back on: it is
// reported, and nothing is judged (or changed) for it.
func TestABadAnnotationBeforeTheTakeoverJudgesNothing(t *testing.T) {
	c := resolving(t)
	for _, last := range []*v1alpha1.Flight{nil, {Spec: v1alpha1.FlightSpec{Policy: "strict"}}} {
		_, p, err := c.resolve(annotated(map[string]string{rollout.AnnotationRollout: "strict", rollout.AnnotationInterval: "2500ms"}), last)
		if p != nil || err == nil || !strings.Contains(err.Error(), rollout.AnnotationInterval) {
			t.Errorf("last %v: policy %v, error %v; want none, and the annotation named", last, p, err)
		}
	}
}

// An echoed value stays short whatever was written: a 262 KB annotation
// does not become a 277 KB condition and Event.
func TestAHugeAnnotationValueIsQuotedBounded(t *testing.T) {
	c := resolving(t)
	huge := strings.Repeat("x", 262*1024)
	for _, key := range []string{rollout.AnnotationRollout, rollout.AnnotationInterval, rollout.AnnotationStepWeights, rollout.AnnotationMaxWeight, rollout.AnnotationVirtualService} {
		a := map[string]string{rollout.AnnotationRollout: "strict", key: huge}
		_, _, err := c.resolve(annotated(a), nil)
		if err == nil {
			t.Fatalf("%s: no error", key)
		}
		if msg := invalidMessage(err); len(msg) > 400 || !strings.Contains(msg, key) || !strings.Contains(msg, "268288 bytes") {
			t.Errorf("%s: a %d-byte report (%.120s...), want under 400 bytes naming the annotation and the value's length", key, len(msg), msg)
		}
	}
	if _, _, err := rollout.ParseAction(map[string]string{rollout.AnnotationAction: huge}); err == nil || len(err.Error()) > 400 {
		t.Errorf("action: %d bytes", len(err.Error()))
	}
}
