//go:build e2e

package rollout_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fledgehq/fledge/e2e/sandbox"
	"github.com/fledgehq/fledge/rollout"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	"github.com/fledgehq/fledge/traffic"
)

// Feature flags in the sandbox: the mesh emulator evaluates the release
// flag per simulated user with flagd's in-process provider reading the
// ConfigMap's content (as apps do), applies the variant's behaviour from
// the pod template, and labels its metrics with the variant. The helpers
// that set this up are in flags_harness_e2e_test.go.

const cohortPolicies = `
webhookSecret: {name: fledge-webhooks, key: hmac}
slack: {secret: fledge-slack}
policies:
  cohorts:
    cohorts:
    - {name: beta, header: x-user-tier, value: beta, minDuration: 8s, minSamples: 30}
    steps: [20, 50]
    interval: 4s
    minInterval: 1s
    progressDeadline: 60s
    sticky: {maxAge: 1h}
    releaseFlags:
    - {configMap: shop-flags, flag: new-checkout, finalVariant: "on"}
    metrics:
    - {name: success-rate, min: 0.97, minSamples: 30}
`

// linkedPolicies has the policy "linked", whose rollouts step the release
// flag new-checkout with the canary's weight.
const linkedPolicies = `
policies:
  linked:
    steps: [20, 50]
    interval: 3s
    minInterval: 1s
    progressDeadline: 60s
    releaseFlags:
    - {configMap: shop-flags, flag: new-checkout}
    metrics:
    - {name: success-rate, min: 0.97, minSamples: 30}
`

// (1) A cohort stage sends every beta request, and no other, to the
// canary, with the release flag on for beta users alone; (5) during the
// weighted steps a user who reached the canary keeps reaching it; (4) the
// healthy rollout ends with the flag at the policy's final state and the
// match routes gone. The flags appear in the decision log and in Slack.
func TestCohortThenStickyStepsWithTheReleaseFlagInLockstep(t *testing.T) {
	sb, ns := suite.Namespace(t)
	installHookSecrets(t, sb)
	optInReleaseFlags(t, sb, ns, releaseFlagsDoc)
	startEngine(t, sb, ns, engineOptions{Policies: cohortPolicies})
	flagApp(t, sb, ns, "shop", "cohorts", flagAnnotations(nil), 0.3)
	rec := record(t, sb, ns)

	rev := setImage(t, sb, ns, "shop", "example.com/shop:v2", flagAnnotations(nil))
	f := waitFlight(t, sb, ns, "shop", 60*time.Second, func(f *v1alpha1.Flight) bool {
		return f.Status.Step == 0 && flagState(f, "new-checkout") == v1alpha1.FlagInSync
	})
	if len(f.Status.Cohorts) != 1 || f.Status.CanaryWeight != 0 {
		t.Fatalf("cohort stage: cohorts %+v at weight %d, want beta at 0%%", f.Status.Cohorts, f.Status.CanaryWeight)
	}
	if w := routingOf(t, sb, ns); w.Cohort.Name != "beta" || w.Canary != 0 {
		t.Fatalf("routing %+v, want the beta cohort route and 100/0", w)
	}
	if got := targetingJSON(flagOf(t, sb, ns, "new-checkout")); !strings.Contains(got, `"x-user-tier"`) || !strings.Contains(got, `"beta"`) {
		t.Errorf("new-checkout targeting %s during the cohort stage, want on for x-user-tier=beta", got)
	}
	time.Sleep(500 * time.Millisecond) // the emulator's debounce, and its flag provider's sync
	reqs := rec.window(3 * time.Second)
	var beta, betaCanary, others, othersCanary, betaOn, othersOn int
	for _, r := range reqs {
		canary := r.canary
		if r.beta {
			beta++
			if canary {
				betaCanary++
			}
			if r.variant == "on" {
				betaOn++
			}
		} else {
			others++
			if canary {
				othersCanary++
			}
			if r.variant == "on" {
				othersOn++
			}
		}
	}
	t.Logf("cohort stage: %d beta requests (%d to the canary, %d flag on), %d others (%d to the canary, %d flag on)", beta, betaCanary, betaOn, others, othersCanary, othersOn)
	if beta == 0 || betaCanary != beta || othersCanary != 0 {
		t.Errorf("cohort stage: %d of %d beta requests and %d of %d others reached the canary; want all beta and no other", betaCanary, beta, othersCanary, others)
	}
	if betaOn != beta || othersOn != 0 {
		t.Errorf("cohort stage: flag on for %d of %d beta and %d of %d other requests; want all beta and no other", betaOn, beta, othersOn, others)
	}
	if f, _ := getFlight(context.Background(), sb, ns, "shop"); f.Status.Step != 0 {
		t.Fatalf("the cohort stage ended during the window (step %d): lengthen its minDuration", f.Status.Step)
	}

	f = waitFlight(t, sb, ns, "shop", 60*time.Second, func(f *v1alpha1.Flight) bool {
		return f.Status.Step == 1 && flagState(f, "new-checkout") == v1alpha1.FlagInSync
	})
	if w := routingOf(t, sb, ns); w.Canary != 20 || w.Sticky.Cookie != rollout.DefaultStickyCookie || !w.Cohort.IsZero() {
		t.Errorf("routing %+v at the first weighted step, want 80/20 with the sticky cookie and no cohort", w)
	}
	if got := targetingJSON(flagOf(t, sb, ns, "new-checkout")); !strings.Contains(got, "fractional") || !strings.Contains(got, `["on",20]`) {
		t.Errorf("new-checkout targeting %s at 20%%, want a fractional split on 20", got)
	}
	time.Sleep(500 * time.Millisecond)
	reqs = rec.window(3 * time.Second)
	reached := map[string]bool{}
	var flipped []string
	canaryReqs, onReqs := 0, 0
	for _, r := range reqs {
		if r.canary {
			reached[r.user] = true
			canaryReqs++
		} else if reached[r.user] {
			flipped = append(flipped, r.user)
		}
		if r.variant == "on" {
			onReqs++
		}
	}
	t.Logf("20%% step: %d requests, %d to the canary, %d users reached it, %d flag on", len(reqs), canaryReqs, len(reached), onReqs)
	if len(reached) == 0 {
		t.Fatal("no user reached the canary at 20%")
	}
	if len(flipped) > 0 {
		t.Errorf("%d requests of users who had reached the canary went back to stable (e.g. %s): sticky users must stay", len(flipped), flipped[0])
	}
	if share := float64(onReqs) / float64(len(reqs)); share < 0.08 || share > 0.35 {
		t.Errorf("flag on for %.2f of requests at 20%%, want about 0.2", share)
	}

	f = waitFlight(t, sb, ns, "shop", 90*time.Second, func(f *v1alpha1.Flight) bool {
		return f.Status.Phase == v1alpha1.PhaseSucceeded && f.Status.StableRevision == rev && flagState(f, "new-checkout") == v1alpha1.FlagInSync
	})
	def := flagOf(t, sb, ns, "new-checkout")
	if def["defaultVariant"] != "on" || def["targeting"] != nil {
		t.Errorf("new-checkout after the promotion: %v, want defaultVariant on and no targeting", def)
	}
	if got := targetingJSON(flagOf(t, sb, ns, "dark-mode")); !strings.Contains(got, `"off","on"`) {
		t.Errorf("dark-mode was changed: targeting %s", got)
	}
	if w := routingOf(t, sb, ns); w != (traffic.Weights{Stable: 100}) {
		t.Errorf("routing %+v after the promotion, want plain 100/0 (no cohort, no sticky route)", w)
	}
	var logged []string
	for _, d := range f.Status.Decisions {
		if d.Revision == rev {
			logged = append(logged, fmt.Sprintf("%s %v", d.Verdict, d.Flags))
		}
	}
	t.Logf("decision log: %q", logged)
	for _, want := range []string{"new-checkout: on for x-user-tier=beta", "new-checkout: on for 20% of users", "new-checkout: on (final)"} {
		if !strings.Contains(strings.Join(logged, "\n"), want) {
			t.Errorf("decision log lacks %q", want)
		}
	}
	waitOutboxEmpty(t, sb, ns)
	if ms := slackOf(sb, ns, "promoted"); len(ms) != 1 || !ms[0].Contains("new-checkout") {
		t.Errorf("Slack promotion messages %+v: want one naming new-checkout", ms)
	}
}

// (2) A freeze flag set to false holds the rollout at its step (the checks
// go on) until it is set true; a broken flag source holds too, with
// another reason.
func TestAFlagGateHoldsUntilTrueAndABrokenSourceHoldsToo(t *testing.T) {
	sb, ns := suite.Namespace(t)
	engineBinary(t, sb)
	gates := "gates-" + ns
	gateDoc := func(v string) string {
		return `{"flags": {"release-freeze-lifted": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "` + v + `"}}}`
	}
	putConfigMap(t, sb, engineNamespace, gates, flagsKey, gateDoc("on"))
	t.Cleanup(func() {
		_ = sb.Kube.CoreV1().ConfigMaps(engineNamespace).Delete(context.Background(), gates, metav1.DeleteOptions{})
	})
	startEngine(t, sb, ns, engineOptions{Policies: fmt.Sprintf(`
flagSource: {configMap: %s}
policies:
  gated:
    steps: [20, 50]
    interval: 3s
    minInterval: 1s
    progressDeadline: 60s
    flagGates: [{flag: release-freeze-lifted}]
    metrics:
    - {name: success-rate, min: 0.97, minSamples: 30}
`, gates)})
	shopApp(t, sb, ns, "gated", 150)

	rev := setImage(t, sb, ns, "shop", "example.com/shop:v2", nil)
	waitFlight(t, sb, ns, "shop", 60*time.Second, func(f *v1alpha1.Flight) bool { return f.Status.Step == 0 })
	putConfigMap(t, sb, engineNamespace, gates, flagsKey, gateDoc("off"))
	held := waitFlight(t, sb, ns, "shop", 30*time.Second, func(f *v1alpha1.Flight) bool {
		return f.Status.Hold != nil && f.Status.Hold.Reason == v1alpha1.HoldFlagGate
	})
	t.Logf("held: %s", held.Status.Hold.Message)
	if held.Status.Step != 0 || held.Status.CanaryWeight != 20 || !strings.Contains(held.Status.Hold.Message, "release-freeze-lifted") {
		t.Errorf("held at step %d, %d%%: %q; want step 0 at 20%% naming the flag", held.Status.Step, held.Status.CanaryWeight, held.Status.Hold.Message)
	}
	waitWarning(t, sb, ns, "shop", "Held", "release-freeze-lifted")
	round := held.Status.Round
	f := waitFlight(t, sb, ns, "shop", 30*time.Second, func(f *v1alpha1.Flight) bool { return f.Status.Round >= round+2 })
	if f.Status.Step != 0 || f.Status.Phase != v1alpha1.PhaseProgressing {
		t.Fatalf("moved while the freeze flag was false: phase %s step %d", f.Status.Phase, f.Status.Step)
	}

	putConfigMap(t, sb, engineNamespace, gates, flagsKey, gateDoc("on"))
	waitFlight(t, sb, ns, "shop", 30*time.Second, func(f *v1alpha1.Flight) bool { return f.Status.Step == 1 })
	putConfigMap(t, sb, engineNamespace, gates, flagsKey, `{"flags": {"release-freeze-lifted": `)
	held = waitFlight(t, sb, ns, "shop", 30*time.Second, func(f *v1alpha1.Flight) bool {
		return f.Status.Hold != nil && f.Status.Hold.Reason == v1alpha1.HoldFlagGateUnreadable
	})
	t.Logf("held: %s", held.Status.Hold.Message)
	if held.Status.Step != 1 || !strings.Contains(held.Status.Hold.Message, "cannot be read") {
		t.Errorf("held at step %d: %q; want step 1, saying the gate cannot be read", held.Status.Step, held.Status.Hold.Message)
	}
	round = held.Status.Round
	f = waitFlight(t, sb, ns, "shop", 30*time.Second, func(f *v1alpha1.Flight) bool { return f.Status.Round >= round+1 })
	if f.Status.Phase != v1alpha1.PhaseProgressing {
		t.Fatalf("phase %s with an unreadable gate, want Progressing", f.Status.Phase)
	}
	putConfigMap(t, sb, engineNamespace, gates, flagsKey, gateDoc("on"))
	waitFlight(t, sb, ns, "shop", 60*time.Second, func(f *v1alpha1.Flight) bool {
		return f.Status.Phase == v1alpha1.PhaseSucceeded && f.Status.StableRevision == rev
	})
}

// (3) A faulty on-variant is detected by a check that compares the
// on-variant's users with the others (the emulator labels its metrics with
// the variant), and the rollback turns the flag off and routes everything
// to stable in the same decision.
func TestAFaultyOnVariantIsRolledBackWithItsFlagOffInTheSameTransition(t *testing.T) {
	sb, ns := suite.Namespace(t)
	engineBinary(t, sb)
	optInReleaseFlags(t, sb, ns, releaseFlagsDoc)
	errorRatio := func(variant string) string {
		return `(sum(rate(istio_requests_total{reporter="destination",destination_workload={{ .Workload }},destination_workload_namespace={{ .Namespace }},flag_variant={{ .` + variant + ` }},response_code=~"5.."}[{{ .Interval }}])) or vector(0))` +
			` / sum(rate(istio_requests_total{reporter="destination",destination_workload={{ .Workload }},destination_workload_namespace={{ .Namespace }},flag_variant={{ .` + variant + ` }}}[{{ .Interval }}]))`
	}
	startEngine(t, sb, ns, engineOptions{Policies: fmt.Sprintf(`
policies:
  by-variant:
    steps: [50]
    interval: 4s
    minInterval: 1s
    progressDeadline: 60s
    releaseFlags:
    - {configMap: shop-flags, flag: new-checkout}
    metrics:
    - {name: success-rate, min: 0.5, minSamples: 30}
    - name: on-variant-extra-errors
      query: %q
      samplesQuery: 'sum(increase(istio_requests_total{reporter="destination",destination_workload={{ .Workload }},destination_workload_namespace={{ .Namespace }},flag_variant={{ .OnVariant }}}[{{ .Interval }}]))'
      max: 0.05
      minSamples: 20
`, errorRatio("OnVariant")+" - "+errorRatio("OffVariant"))})
	flagApp(t, sb, ns, "shop", "by-variant", flagAnnotations(nil), 0)

	rev := setImage(t, sb, ns, "shop", "example.com/shop:v2", flagAnnotations(map[string]string{"on.error-rate": "0.3"}))
	f := waitFlight(t, sb, ns, "shop", 90*time.Second, func(f *v1alpha1.Flight) bool {
		return f.Status.CanaryRevision == rev && f.Status.Phase.Terminal()
	})
	if f.Status.Phase != v1alpha1.PhaseRolledBack || f.Status.RejectedRevision != rev {
		t.Fatalf("phase %s, rejected %q: want %s rolled back", f.Status.Phase, f.Status.RejectedRevision, rev)
	}
	if !strings.Contains(f.Status.Message, "on-variant-extra-errors") {
		t.Errorf("rollback message %q does not name the variant check", f.Status.Message)
	}
	var last v1alpha1.DecisionRecord
	for _, d := range f.Status.Decisions {
		if d.Revision == rev && d.Verdict == v1alpha1.VerdictRollback {
			last = d
		}
	}
	t.Logf("rollback: %s; flags %v", last.Message, last.Flags)
	if len(last.Flags) != 1 || last.Flags[0] != "new-checkout: off" {
		t.Errorf("the rollback decision left flags %v, want [new-checkout: off]", last.Flags)
	}
	// The decision's two effects, routing and flag, as observed.
	var routedAt, offAt time.Time
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && (routedAt.IsZero() || offAt.IsZero()) {
		if routedAt.IsZero() && routingOf(t, sb, ns) == (traffic.Weights{Stable: 100}) {
			routedAt = time.Now()
		}
		if def := flagOf(t, sb, ns, "new-checkout"); offAt.IsZero() && def["defaultVariant"] == "off" && def["targeting"] == nil {
			offAt = time.Now()
		}
		time.Sleep(50 * time.Millisecond)
	}
	if routedAt.IsZero() || offAt.IsZero() {
		t.Fatalf("after the rollback: routing plain %v, flag off %v; want both", !routedAt.IsZero(), !offAt.IsZero())
	}
	t.Logf("routing plain and flag off observed %s apart", offAt.Sub(routedAt).Abs().Round(time.Millisecond))
	assertSettled(t, sb, ns)
}

// (6) A person edits the release flag mid-rollout: fledge detects it,
// holds and says so, and does not overwrite the edit, even when the
// rollout is then aborted.
func TestAPersonsEditOfTheReleaseFlagHoldsAndIsNotOverwritten(t *testing.T) {
	sb, ns := suite.Namespace(t)
	engineBinary(t, sb)
	optInReleaseFlags(t, sb, ns, releaseFlagsDoc)
	startEngine(t, sb, ns, engineOptions{Policies: linkedPolicies})
	flagApp(t, sb, ns, "shop", "linked", flagAnnotations(nil), 0)
	setImage(t, sb, ns, "shop", "example.com/shop:v2", flagAnnotations(nil))
	waitFlight(t, sb, ns, "shop", 60*time.Second, func(f *v1alpha1.Flight) bool {
		return f.Status.Step == 0 && flagState(f, "new-checkout") == v1alpha1.FlagInSync
	})
	// The person turns the feature on for everyone.
	edited := strings.Replace(releaseFlagsDoc, `"defaultVariant": "off"}`, `"defaultVariant": "on"}`, 1)
	putConfigMap(t, sb, ns, flagsConfigMap, flagsKey, edited)
	held := waitFlight(t, sb, ns, "shop", 30*time.Second, func(f *v1alpha1.Flight) bool {
		return f.Status.Hold != nil && f.Status.Hold.Reason == v1alpha1.HoldFlagEdited
	})
	t.Logf("held: %s", held.Status.Hold.Message)
	if !strings.Contains(held.Status.Hold.Message, "new-checkout") || !strings.Contains(held.Status.Hold.Message, "someone else") {
		t.Errorf("hold message %q does not name the flag and the edit", held.Status.Hold.Message)
	}
	waitWarning(t, sb, ns, "shop", "Held", "new-checkout")
	round := held.Status.Round
	f := waitFlight(t, sb, ns, "shop", 30*time.Second, func(f *v1alpha1.Flight) bool { return f.Status.Round >= round+2 })
	if f.Status.Step != 0 {
		t.Errorf("moved to step %d while the flag was edited", f.Status.Step)
	}
	if got := readConfigMap(t, sb, ns, flagsConfigMap).Data[flagsKey]; got != edited {
		t.Errorf("the person's edit was overwritten:\n%s", got)
	}
	annotate(t, sb, ns, map[string]string{rollout.AnnotationAction: "abort", rollout.AnnotationActionReason: "the flag went out by hand"})
	waitFlight(t, sb, ns, "shop", 30*time.Second, func(f *v1alpha1.Flight) bool { return f.Status.Phase == v1alpha1.PhaseAborted })
	assertSettled(t, sb, ns)
	time.Sleep(2 * time.Second)
	if got := readConfigMap(t, sb, ns, flagsConfigMap).Data[flagsKey]; got != edited {
		t.Errorf("the person's edit was overwritten after the abort:\n%s", got)
	}
}

// Bad input: a release flag that does not exist, a gate flag of the wrong
// type, a flags document that is not valid flagd JSON: each holds with a
// clear reason on the Flight and an Event, nothing is written, and another
// rollout of the same engine is not held up.
func TestBadFlagsHoldWithAReasonWriteNothingAndStopNoOtherRollout(t *testing.T) {
	sb, ns := suite.Namespace(t)
	engineBinary(t, sb)
	optInReleaseFlags(t, sb, ns, releaseFlagsDoc)
	gates := "gates-" + ns
	putConfigMap(t, sb, engineNamespace, gates, flagsKey, `{"flags": {"freeze": {"state": "ENABLED", "variants": {"a": "yes", "b": "no"}, "defaultVariant": "a"}}}`)
	t.Cleanup(func() {
		_ = sb.Kube.CoreV1().ConfigMaps(engineNamespace).Delete(context.Background(), gates, metav1.DeleteOptions{})
	})
	startEngine(t, sb, ns, engineOptions{Policies: fmt.Sprintf(`
flagSource: {configMap: %s}
policies:
  missing-flag:
    steps: [50]
    interval: 3s
    minInterval: 1s
    releaseFlags:
    - {configMap: shop-flags, flag: no-such-flag}
    metrics:
    - {name: success-rate, min: 0.97, minSamples: 30}
  string-gate:
    steps: [50]
    interval: 3s
    minInterval: 1s
    flagGates: [{flag: freeze}]
    metrics:
    - {name: success-rate, min: 0.97, minSamples: 30}
  linked:
    steps: [50]
    interval: 3s
    minInterval: 1s
    releaseFlags:
    - {configMap: shop-flags, flag: new-checkout}
    metrics:
    - {name: success-rate, min: 0.97, minSamples: 30}
  plain:
    steps: [50]
    interval: 3s
    minInterval: 1s
    metrics:
    - {name: success-rate, min: 0.97, minSamples: 30}
`, gates)})
	flagApp(t, sb, ns, "shop", "missing-flag", nil, 0)
	flagApp(t, sb, ns, "cart", "plain", nil, 0)
	before := readConfigMap(t, sb, ns, flagsConfigMap).ResourceVersion

	setImage(t, sb, ns, "shop", "example.com/shop:v2", nil)
	cartRev := setImage(t, sb, ns, "cart", "example.com/cart:v2", nil)
	held := waitFlight(t, sb, ns, "shop", 30*time.Second, func(f *v1alpha1.Flight) bool {
		return f.Status.Hold != nil && f.Status.Hold.Reason == v1alpha1.HoldFlagUnreadable
	})
	t.Logf("missing flag: %s", held.Status.Hold.Message)
	if !strings.Contains(held.Status.Hold.Message, "no-such-flag") || held.Status.Step != -1 {
		t.Errorf("held at step %d: %q; want before any traffic, naming the flag", held.Status.Step, held.Status.Hold.Message)
	}
	waitWarning(t, sb, ns, "shop", "Held", "no-such-flag")

	switchPolicy(t, sb, ns, "string-gate", "example.com/shop:v3")
	held = waitFlight(t, sb, ns, "shop", 30*time.Second, func(f *v1alpha1.Flight) bool {
		return f.Status.Hold != nil && f.Status.Hold.Reason == v1alpha1.HoldFlagGateUnreadable
	})
	t.Logf("string gate: %s", held.Status.Hold.Message)
	if !strings.Contains(held.Status.Hold.Message, "not a boolean") {
		t.Errorf("hold %q does not say the gate is not a boolean flag", held.Status.Hold.Message)
	}

	putConfigMap(t, sb, ns, flagsConfigMap, flagsKey, `{"flags": {"new-checkout": {"state": "ENABLED"`)
	before = readConfigMap(t, sb, ns, flagsConfigMap).ResourceVersion
	switchPolicy(t, sb, ns, "linked", "example.com/shop:v4")
	held = waitFlight(t, sb, ns, "shop", 30*time.Second, func(f *v1alpha1.Flight) bool {
		return f.Status.Hold != nil && f.Status.Hold.Reason == v1alpha1.HoldFlagUnreadable
	})
	t.Logf("invalid document: %s", held.Status.Hold.Message)
	if !strings.Contains(held.Status.Hold.Message, "not a flagd flag document") {
		t.Errorf("hold %q does not say the document is invalid", held.Status.Hold.Message)
	}
	waitWarning(t, sb, ns, "shop", "Held", "flagd")

	cart := waitFlight(t, sb, ns, "cart", 60*time.Second, func(f *v1alpha1.Flight) bool { return f.Status.Phase == v1alpha1.PhaseSucceeded })
	if cart.Status.StableRevision != cartRev {
		t.Errorf("cart: stable %s, want %s promoted", cart.Status.StableRevision, cartRev)
	}
	time.Sleep(2 * time.Second)
	if rv := readConfigMap(t, sb, ns, flagsConfigMap).ResourceVersion; rv != before {
		t.Errorf("the flags ConfigMap was written (resourceVersion %s, was %s)", rv, before)
	}
	if f, _ := getFlight(context.Background(), sb, ns, "shop"); f.Status.Step != -1 || f.Status.Phase != v1alpha1.PhaseProgressing {
		t.Errorf("shop: phase %s step %d, want held before any traffic", f.Status.Phase, f.Status.Step)
	}
}

// switchPolicy moves shop to another policy, then starts a new revision
// under it (a revision keeps the plan it started with).
func switchPolicy(t *testing.T, sb *sandbox.Sandbox, ns, policy, image string) {
	t.Helper()
	annotate(t, sb, ns, map[string]string{rollout.AnnotationRollout: policy})
	waitFlight(t, sb, ns, "shop", 30*time.Second, func(f *v1alpha1.Flight) bool { return f.Spec.Policy == policy })
	setImage(t, sb, ns, "shop", image, nil)
}

// Two Deployments of a namespace link the same release flag: the rollout
// that started first steps it; the other waits (FlagInUse, naming it),
// writing nothing, and goes on once the first one has ended.
func TestOneReleaseFlagFollowsOneRolloutAtATime(t *testing.T) {
	sb, ns := suite.Namespace(t)
	engineBinary(t, sb)
	optInReleaseFlags(t, sb, ns, releaseFlagsDoc)
	startEngine(t, sb, ns, engineOptions{Policies: linkedPolicies})
	flagApp(t, sb, ns, "shop", "linked", flagAnnotations(nil), 0)
	flagApp(t, sb, ns, "cart", "linked", nil, 0)

	shopRev := setImage(t, sb, ns, "shop", "example.com/shop:v2", flagAnnotations(nil))
	waitFlight(t, sb, ns, "shop", 60*time.Second, func(f *v1alpha1.Flight) bool { return f.Status.Step == 0 })
	// shop stays in flight (paused) while cart tries.
	annotate(t, sb, ns, map[string]string{rollout.AnnotationAction: "pause"})
	waitFlight(t, sb, ns, "shop", 30*time.Second, func(f *v1alpha1.Flight) bool { return f.Status.Phase == v1alpha1.PhasePaused })
	cartRev := setImage(t, sb, ns, "cart", "example.com/cart:v2", nil)
	held := waitFlight(t, sb, ns, "cart", 30*time.Second, func(f *v1alpha1.Flight) bool {
		return f.Status.Hold != nil && f.Status.Hold.Reason == v1alpha1.HoldFlagInUse
	})
	t.Logf("cart held: %s", held.Status.Hold.Message)
	if !strings.Contains(held.Status.Hold.Message, ns+"/shop") || held.Status.Step != -1 {
		t.Errorf("cart held at step %d: %q; want before any traffic, naming the Flight shop", held.Status.Step, held.Status.Hold.Message)
	}
	annotate(t, sb, ns, map[string]string{rollout.AnnotationAction: "resume"})
	shop := waitFlight(t, sb, ns, "shop", 60*time.Second, func(f *v1alpha1.Flight) bool {
		return f.Status.Phase == v1alpha1.PhaseSucceeded && f.Status.StableRevision == shopRev
	})
	if s := flagState(shop, "new-checkout"); s != v1alpha1.FlagInSync {
		t.Errorf("shop's flag %s after its promotion, want InSync (never disturbed by cart)", s)
	}
	// The flag is at its final variant now: cart's revision leaves it
	// alone and is promoted.
	cart := waitFlight(t, sb, ns, "cart", 60*time.Second, func(f *v1alpha1.Flight) bool {
		return f.Status.Phase == v1alpha1.PhaseSucceeded && f.Status.StableRevision == cartRev
	})
	if s := flagState(cart, "new-checkout"); s != v1alpha1.FlagLeftAlone {
		t.Errorf("cart's flag %s, want LeftAlone (shop released it): %s", s, cart.Status.Flags[0].Message)
	}
}
