//go:build e2e

package rollout_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/fledgehq/fledge/analysis"
	"github.com/fledgehq/fledge/e2e/sandbox"
	"github.com/fledgehq/fledge/rollout"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	fledgeengine "github.com/fledgehq/fledge/rollout/engine"
)

// strictPolicies bounds the overrides a team may ask for: no step above
// 50%, no interval below 2s.
const strictPolicies = `
policies:
  strict:
    steps: [20, 50]
    interval: 5s
    minInterval: 2s
    failureLimit: 2
    progressDeadline: 60s
    metrics:
    - name: success-rate
      min: 0.97
      minSamples: 30
    - name: latency-p95
      max: 400
      minSamples: 30
`

// badAnnotation is one kind of bad input a team can write on its
// Deployment, and the edit that fixes it.
type badAnnotation struct {
	name       string            // sentence: what is wrong
	deployment string            // one Deployment per case, so they are judged side by side
	annotation string            // the annotation the report must name
	bad        map[string]string // the Deployment's annotations as created
	fix        map[string]any    // a merge patch of annotations (nil removes one)
}

var badAnnotations = []badAnnotation{{
	name:       "a policy that does not exist",
	deployment: "unknown-policy",
	annotation: rollout.AnnotationRollout,
	bad:        map[string]string{rollout.AnnotationRollout: "no-such-policy"},
	fix:        map[string]any{rollout.AnnotationRollout: "strict"},
}, {
	name:       "a step weight above the policy's largest step",
	deployment: "weight-above-max",
	annotation: rollout.AnnotationStepWeights,
	bad:        map[string]string{rollout.AnnotationRollout: "strict", rollout.AnnotationStepWeights: "10,80"},
	fix:        map[string]any{rollout.AnnotationStepWeights: "10,40"},
}, {
	name:       "an interval below the policy's minimum",
	deployment: "interval-too-short",
	annotation: rollout.AnnotationInterval,
	bad:        map[string]string{rollout.AnnotationRollout: "strict", rollout.AnnotationInterval: "1ms"},
	fix:        map[string]any{rollout.AnnotationInterval: "10s"},
}, {
	name:       "step weights that are not numbers",
	deployment: "weights-not-numbers",
	annotation: rollout.AnnotationStepWeights,
	bad:        map[string]string{rollout.AnnotationRollout: "strict", rollout.AnnotationStepWeights: "ten"},
	fix:        map[string]any{rollout.AnnotationStepWeights: nil},
}, {
	name:       "a URL where a VirtualService name belongs",
	deployment: "virtual-service-url",
	annotation: rollout.AnnotationVirtualService,
	bad:        map[string]string{rollout.AnnotationRollout: "strict", rollout.AnnotationVirtualService: "http://evil"},
	fix:        map[string]any{rollout.AnnotationVirtualService: nil},
}}

// Whoever can edit a Deployment can write anything in its annotations.
// fledge must refuse what is wrong where the team looks (the Flight and
// the Deployment's Events), act on none of it, and go on serving every
// other rollout it runs.
func TestBadAnnotationsAreReportedChangeNothingAndStopNoOtherRollout(t *testing.T) {
	sb, ns := suite.Namespace(t)
	ctx := context.Background()
	startEngine(t, sb, ns, engineOptions{Policies: strictPolicies})
	t.Cleanup(func() { dumpFlightsOnFailure(t, sb, ns) })

	created := map[string]string{} // deployment: template hash as created
	for _, c := range badAnnotations {
		d := createAnnotatedApp(t, sb, ns, c.deployment, c.bad, 0)
		created[c.deployment] = fledgeengine.TemplateHash(d.Spec.Template)
	}
	createAnnotatedApp(t, sb, ns, "cart", map[string]string{rollout.AnnotationRollout: "strict"}, 200)

	for _, c := range badAnnotations {
		t.Run(c.name+" is reported on the Flight and in a Warning Event", func(t *testing.T) {
			f := waitFlight(t, sb, ns, c.deployment, 30*time.Second, func(f *v1alpha1.Flight) bool {
				v := meta.FindStatusCondition(f.Status.Conditions, "Valid")
				return v != nil && v.Status == metav1.ConditionFalse
			})
			v := meta.FindStatusCondition(f.Status.Conditions, "Valid")
			t.Logf("Valid=False (%s): %s", v.Reason, v.Message)
			if !strings.Contains(v.Message, c.annotation) {
				t.Errorf("condition Valid=False says %q, want it to name %s", v.Message, c.annotation)
			}
			// Nothing was decided for it: no phase, no decision log.
			if f.Status.Phase != "" || len(f.Status.Decisions) > 0 {
				t.Errorf("flight of an invalid Deployment: phase %q, %d decisions; want neither", f.Status.Phase, len(f.Status.Decisions))
			}
			waitWarning(t, sb, ns, c.deployment, "InvalidSpec", c.annotation)
		})
	}

	t.Run("another Deployment of the same engine is taken over and promoted meanwhile", func(t *testing.T) {
		waitFlight(t, sb, ns, "cart", time.Minute, func(f *v1alpha1.Flight) bool { return f.Status.Phase == v1alpha1.PhaseIdle })
		rev := setImage(t, sb, ns, "cart", "example.com/cart:v2", nil)
		began := time.Now()
		waitFlight(t, sb, ns, "cart", 2*time.Minute, func(f *v1alpha1.Flight) bool {
			return f.Status.Phase == v1alpha1.PhaseSucceeded && f.Status.StableRevision == rev
		})
		t.Logf("cart promoted in %s while %d Deployments beside it were invalid", time.Since(began).Round(time.Second), len(badAnnotations))
	})

	// Checked after cart's whole rollout: the engine had time and reasons
	// (its own events, resyncs) to act on the invalid ones, had it wanted to.
	for _, c := range badAnnotations {
		t.Run(c.name+" changes nothing", func(t *testing.T) {
			d, err := sb.Kube.AppsV1().Deployments(ns).Get(ctx, c.deployment, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			// Generation 1: no write to the spec since creation, pausing included.
			if d.Spec.Paused || d.Generation != 1 || *d.Spec.Replicas != 2 || fledgeengine.TemplateHash(d.Spec.Template) != created[c.deployment] {
				t.Errorf("deployment: paused=%v generation=%d replicas=%d template %s; want it as created (unpaused, generation 1, 2 replicas, template %s)",
					d.Spec.Paused, d.Generation, *d.Spec.Replicas, fledgeengine.TemplateHash(d.Spec.Template), created[c.deployment])
			}
			canary := c.deployment + fledgeengine.CanarySuffix
			if _, err := sb.Kube.AppsV1().Deployments(ns).Get(ctx, canary, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				t.Errorf("canary Deployment %s: %v, want not found", canary, err)
			}
			if _, err := sb.Kube.CoreV1().Services(ns).Get(ctx, canary, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				t.Errorf("canary Service %s: %v, want not found", canary, err)
			}
		})
	}
	t.Run("no VirtualService is made for an invalid Deployment", func(t *testing.T) {
		if names := virtualServiceNames(t, sb, ns); !slices.Equal(names, []string{"cart"}) {
			t.Errorf("VirtualServices in the namespace: %v, want only cart's", names)
		}
	})

	takeovers := watchTakeovers(t, sb, ns)
	for _, c := range badAnnotations {
		patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": c.fix}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sb.Kube.AppsV1().Deployments(ns).Patch(ctx, c.deployment, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range badAnnotations {
		t.Run("once "+c.name+" is fixed, the Deployment is taken over", func(t *testing.T) {
			waitFlight(t, sb, ns, c.deployment, time.Minute, func(f *v1alpha1.Flight) bool {
				v := meta.FindStatusCondition(f.Status.Conditions, "Valid")
				return v != nil && v.Status == metav1.ConditionTrue && f.Status.Phase == v1alpha1.PhaseIdle
			})
			err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
				d, err := sb.Kube.AppsV1().Deployments(ns).Get(ctx, c.deployment, metav1.GetOptions{})
				return err == nil && d.Spec.Paused, nil
			})
			if err != nil {
				t.Fatal("the Deployment is not held (paused) 10s after its Flight went Idle")
			}
			// Idle tells a pipeline that fledge holds the Deployment and the
			// next template will be canaried. Said before the pause lands,
			// a template applied in between rolls out with no canary: the
			// same reason Succeeded is written only once the Deployment is
			// paused again.
			paused, idle := takeovers()
			if paused[c.deployment] == 0 || idle[c.deployment] == 0 || idle[c.deployment] < paused[c.deployment] {
				t.Errorf("the Flight went Idle at write %d, the Deployment was paused at write %d: Idle must come after the pause",
					idle[c.deployment], paused[c.deployment])
			}
		})
	}
}

// watchTakeovers watches the namespace's Deployments and Flights from now
// on, and returns, by name, the resourceVersion of the first write that
// paused each Deployment and of the first that set each Flight Idle.
//
// resourceVersions are opaque in general; in the sandbox a single etcd
// numbers every write in order, and this is what the comparison of a
// Deployment's and a Flight's writes relies on.
func watchTakeovers(t *testing.T, sb *sandbox.Sandbox, ns string) func() (paused, idle map[string]int64) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	deployments, err := sb.Kube.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dw, err := sb.Kube.AppsV1().Deployments(ns).Watch(ctx, metav1.ListOptions{ResourceVersion: deployments.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	flights := sb.Fledge.FledgeV1alpha1().Flights(ns)
	list, err := flights.List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fw, err := flights.Watch(ctx, metav1.ListOptions{ResourceVersion: list.GetResourceVersion()})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	paused, idle := map[string]int64{}, map[string]int64{}
	first := func(m map[string]int64, name, rv string) {
		n, err := strconv.ParseInt(rv, 10, 64)
		mu.Lock()
		defer mu.Unlock()
		if _, seen := m[name]; !seen && err == nil {
			m[name] = n
		}
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for ev := range dw.ResultChan() {
			if d, ok := ev.Object.(*appsv1.Deployment); ok && d.Spec.Paused {
				first(paused, d.Name, d.ResourceVersion)
			}
		}
	}()
	go func() {
		defer wg.Done()
		for ev := range fw.ResultChan() {
			if f, ok := ev.Object.(*v1alpha1.Flight); ok && f.Status.Phase == v1alpha1.PhaseIdle {
				first(idle, f.Name, f.ResourceVersion)
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		dw.Stop()
		fw.Stop()
		wg.Wait()
	})
	return func() (map[string]int64, map[string]int64) {
		mu.Lock()
		defer mu.Unlock()
		return maps.Clone(paused), maps.Clone(idle)
	}
}

// waitWarning waits for a Warning Event with the reason on the Deployment
// whose message contains want. The engine's recorder sends Events
// asynchronously, so they may follow the Flight's status by a moment.
func waitWarning(t *testing.T, sb *sandbox.Sandbox, ns, deployment, reason, want string) {
	t.Helper()
	var seen []string
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, 15*time.Second, true, func(ctx context.Context) (bool, error) {
		list, err := sb.Kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{
			FieldSelector: "involvedObject.kind=Deployment,involvedObject.name=" + deployment + ",reason=" + reason,
		})
		if err != nil {
			return false, nil
		}
		seen = seen[:0]
		for _, e := range list.Items {
			seen = append(seen, e.Type+": "+e.Message)
			if e.Type == corev1.EventTypeWarning && strings.Contains(e.Message, want) {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Errorf("no Warning Event %s naming %s on deployment %s; events with that reason: %q", reason, want, deployment, seen)
	}
}

// dumpFlightsOnFailure logs every Flight's status in the namespace.
func dumpFlightsOnFailure(t *testing.T, sb *sandbox.Sandbox, ns string) {
	if !t.Failed() {
		return
	}
	list, err := sb.Fledge.FledgeV1alpha1().Flights(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Logf("list flights: %v", err)
		return
	}
	for i := range list.Items {
		f := &list.Items[i]
		t.Logf("flight %s: phase=%q hold=%+v message=%q conditions=%+v", f.Name, f.Status.Phase, f.Status.Hold, f.Status.Message, f.Status.Conditions)
	}
}

// One invalid policy rejects the whole file, and at start there is no
// previous file to fall back on: the engine must refuse to run rather than
// run with some policies missing, and say which field is wrong. (The other
// half of the rule, a reload that is rejected while the policies in force
// stay whole, is covered by rollout's PolicyFile unit tests; this is the
// half only a real process can show.)
func TestAPolicyFileWithAnInvalidQueryTemplateStopsTheEngineAtStart(t *testing.T) {
	sb, ns := suite.Namespace(t)
	// A quoted variable: the classic way to let a value break out of its
	// string. The valid policy beside it must not be loaded on its own.
	e := startEngine(t, sb, ns, engineOptions{Name: "fledge-bad-policies", Policies: `
policies:
  valid:
    steps: [20, 50]
    metrics:
    - name: success-rate
      min: 0.99
  quoted:
    steps: [20, 50]
    metrics:
    - name: errors
      query: 'sum(rate(istio_requests_total{destination_workload="{{ .Workload }}",response_code=~"5.."}[{{ .Interval }}]))'
      max: 1
`})
	select {
	case <-e.proc.Done():
	case <-time.After(20 * time.Second):
		t.Fatalf("the engine is still running 20s after start with an invalid policy file; log %s", e.LogPath())
	}
	_, err := e.proc.Exited()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() == 0 {
		t.Errorf("the engine exited with %v, want a non-zero status", err)
	}
	log, readErr := os.ReadFile(e.LogPath())
	if readErr != nil {
		t.Fatal(readErr)
	}
	for _, want := range []string{"fledge stopped", "policies.quoted.metrics[0].query", "quoted string"} {
		if !strings.Contains(string(log), want) {
			t.Errorf("the engine's log does not say %q:\n%s", want, log)
		}
	}
	// At start there are no previous policies: an operator reading the
	// crash-looping engine's log must not be told that some are in force.
	if strings.Contains(string(log), "previous policies stay in force") {
		t.Errorf("the engine's log claims previous policies stay in force, but it had none and stopped:\n%s", log)
	}
}

// oddResultPolicies have checks whose queries are valid PromQL but whose
// results are not one number: several series (a by() clause where a sum
// was meant) and NaN (a ratio over nothing). minSamples is low so that the
// canary's traffic is enough to get past the samples check to the value.
const oddResultPolicies = `
policies:
  many-series:
    steps: [20, 50]
    interval: 5s
    minInterval: 1s
    progressDeadline: 60s
    metrics:
    - name: requests-by-workload
      query: 'sum by (destination_workload) (rate(istio_requests_total{destination_workload={{ .Workload }}}[{{ .Interval }}])) or sum by (destination_workload) (rate(istio_requests_total{destination_workload={{ .StableWorkload }}}[{{ .Interval }}]))'
      max: 1000000
      minSamples: 20
  not-a-number:
    steps: [20, 50]
    interval: 5s
    minInterval: 1s
    progressDeadline: 60s
    metrics:
    - name: ratio-over-nothing
      query: '0/0*sum(rate(istio_requests_total{destination_workload={{ .Workload }}}[{{ .Interval }}]))'
      min: 0
      minSamples: 20
`

// A check that cannot produce one number says nothing about the canary: it
// must hold the rollout and say why, never pass it (NaN compares false
// with every bound), never fail it, and never take the engine down.
func TestQueryResultsThatAreNotOneNumberHoldTheRolloutAsAnalysisErrors(t *testing.T) {
	sb, ns := suite.Namespace(t)
	e := startEngine(t, sb, ns, engineOptions{Policies: oddResultPolicies})
	t.Cleanup(func() { dumpFlightsOnFailure(t, sb, ns) })

	cases := []struct{ name, deployment, message string }{
		{"a query that returns several series", "many-series", "more than one series"},
		{"a query whose value is NaN", "not-a-number", "NaN"},
	}
	for _, c := range cases {
		createAnnotatedApp(t, sb, ns, c.deployment, map[string]string{rollout.AnnotationRollout: c.deployment}, 200)
	}
	revs := map[string]string{}
	for _, c := range cases {
		waitFlight(t, sb, ns, c.deployment, time.Minute, func(f *v1alpha1.Flight) bool { return f.Status.Phase == v1alpha1.PhaseIdle })
		revs[c.deployment] = setImage(t, sb, ns, c.deployment, "example.com/"+c.deployment+":v2", nil)
	}
	for _, c := range cases {
		t.Run(c.name+" holds the rollout with an error verdict", func(t *testing.T) {
			rev := revs[c.deployment]
			// errorHolds lists the revision's hold verdicts whose check
			// could not be measured, for the reason this case is about.
			// (A round with too few samples holds too, as NotEnoughData:
			// timing, not what this test is about, so it is let through.)
			errorHolds := func(f *v1alpha1.Flight) (holds []v1alpha1.DecisionRecord, other []v1alpha1.DecisionRecord) {
				for _, d := range f.Status.Decisions {
					switch {
					case d.Revision != rev || d.Verdict == v1alpha1.VerdictStart:
					case d.Verdict == v1alpha1.VerdictHold && len(d.Checks) == 1 && d.Checks[0].Outcome == analysis.NotEnoughData:
					case d.Verdict == v1alpha1.VerdictHold && len(d.Checks) == 1 && d.Checks[0].Outcome == analysis.Error &&
						d.Checks[0].Value == nil && strings.Contains(d.Checks[0].Message, c.message):
						holds = append(holds, d)
					default:
						other = append(other, d)
					}
				}
				return holds, other
			}
			// Two rounds: holding is a steady state, not a moment before
			// something else happens.
			f := waitFlight(t, sb, ns, c.deployment, time.Minute, func(f *v1alpha1.Flight) bool {
				if f.Status.CanaryRevision != rev {
					return false // the new template is not taken in yet
				}
				holds, other := errorHolds(f)
				rounds := 0
				for _, h := range holds {
					rounds += 1 + int(h.Repeats) // a hold judged again the same way is one record
				}
				return rounds >= 2 || len(other) > 0 || f.Status.Phase != v1alpha1.PhaseProgressing
			})
			if f.Status.Phase != v1alpha1.PhaseProgressing || f.Status.Step != 0 || f.Status.CanaryWeight != 20 {
				t.Errorf("flight: phase %s, step %d, weight %d; want Progressing at the first step (20%%)", f.Status.Phase, f.Status.Step, f.Status.CanaryWeight)
			}
			if f.Status.Hold == nil || f.Status.Hold.Reason != v1alpha1.HoldAnalysisError {
				t.Errorf("hold: %+v, want reason %s", f.Status.Hold, v1alpha1.HoldAnalysisError)
			}
			if _, other := errorHolds(f); len(other) > 0 {
				t.Errorf("decisions for %s other than holds on an error saying %q: %+v", rev, c.message, other)
			}
			if holds, _ := errorHolds(f); len(holds) > 0 {
				t.Logf("decision: %s", holds[len(holds)-1].Message)
			}
		})
	}

	t.Run("the engine keeps running", func(t *testing.T) {
		if exited, err := e.proc.Exited(); exited {
			t.Fatalf("the engine exited: %v", err)
		}
		log, err := os.ReadFile(e.LogPath())
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(log), "panic") {
			t.Errorf("the engine's log mentions a panic; see %s", e.LogPath())
		}
	})
}

// A bad annotation written mid-rollout must not switch judgement off: a
// faulty canary at its first step, whose Deployment gets an interval
// PromQL cannot carry (2500ms) and an action fledge does not know, is
// still rolled back, under the last valid settings, and the Flight says
// what is wrong.
func TestABadAnnotationMidRolloutNeverSuspendsJudgement(t *testing.T) {
	sb, ns := suite.Namespace(t)
	ctx := context.Background()
	startEngine(t, sb, ns, engineOptions{})
	shopApp(t, sb, ns, "fast", 200)
	rev := setImage(t, sb, ns, "shop", "example.com/shop:v2", map[string]string{"sandbox.fledge.dev/error-rate": "0.3"})
	waitFlight(t, sb, ns, "shop", time.Minute, func(f *v1alpha1.Flight) bool {
		return f.Status.Phase == v1alpha1.PhaseProgressing && f.Status.CanaryWeight > 0
	})
	patch := fmt.Appendf(nil, `{"metadata":{"annotations":{%q:"2500ms",%q:"explode"}}}`, rollout.AnnotationInterval, rollout.AnnotationAction)
	if _, err := sb.Kube.AppsV1().Deployments(ns).Patch(ctx, "shop", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	written := time.Now()
	f := waitFlight(t, sb, ns, "shop", time.Minute, func(f *v1alpha1.Flight) bool {
		return f.Status.Phase == v1alpha1.PhaseRolledBack && f.Status.RejectedRevision == rev
	})
	t.Logf("rolled back %s after the bad annotations were written", time.Since(written).Round(100*time.Millisecond))
	v := meta.FindStatusCondition(f.Status.Conditions, "Valid")
	if v == nil || v.Status != metav1.ConditionFalse || !strings.Contains(v.Message, rollout.AnnotationInterval) || !strings.Contains(v.Message, rollout.AnnotationAction) {
		t.Errorf("condition Valid %+v: want False, naming both annotations", v)
	}
	waitWarning(t, sb, ns, "shop", "InvalidSpec", rollout.AnnotationInterval)
}
