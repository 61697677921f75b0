package rollout

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	"github.com/fledgehq/fledge/traffic"
)

// configWorld plays the cluster around Decide for config changes: the
// copies exist once asked for, the pinned pods come up when asked for
// (unless previousStuck), the Deployment's pods all predate a content
// change until they are restarted, and the Deployment's revision reads as
// the engine reads it (DeploymentConfig).
type configWorld struct {
	t             *testing.T
	in            Input
	template      string
	copies        map[string]bool // "kind/name" of the copies that exist
	lost          []v1alpha1.ConfigItem
	pods          int32 // the Deployment's pods
	stale         int32 // of them, made before Config.SeenAt
	seenAt        *time.Time
	previousStuck bool
	pdbRefuses    bool // evictions refused: stale pods stay
	actions       []Action
	// sets are the routings set, each with the revision stable was and
	// whether stable's share was to be on the pinned pods then.
	sets []setRecord
}

type setRecord struct {
	w      traffic.Weights
	stable string
	pinned bool
}

func cfg(name, hash string) []v1alpha1.ConfigItem {
	return []v1alpha1.ConfigItem{{Kind: ConfigKindConfigMap, Name: name, Hash: hash}}
}

// newConfigWorld is a Flight at rest on template t1 reading ConfigMap app
// at content "aaa", whose copy exists.
func newConfigWorld(t *testing.T) *configWorld {
	a := cfg("app", "aaa")
	stable := WithConfig("t1", a)
	in := Input{
		Now:    epoch,
		Policy: &Policy{Name: "p", Steps: []int32{10, 50}, Interval: time.Minute, FailureLimit: 2, ProgressDeadline: 5 * time.Minute, MaxWeight: 50},
		Status: v1alpha1.FlightStatus{Phase: v1alpha1.PhaseSucceeded, StableRevision: stable, CanaryRevision: stable, Step: -1,
			Config: &v1alpha1.ConfigStatus{Seen: a, Contents: []v1alpha1.ConfigRevision{{Revision: stable, Items: a}}}},
		Observed: Observed{DesiredRevision: stable, DeploymentRevision: stable, DeploymentSettled: true, DeploymentPaused: true,
			Weights: traffic.Weights{Stable: 100}, DesiredConfig: a, StableReplicas: 2, Name: "web"},
	}
	return &configWorld{t: t, in: in, template: "t1", copies: map[string]bool{"configmap/web-app-aaa": true}, pods: 2}
}

// setConfig changes the content the template reads (as the informer would
// show it).
func (w *configWorld) setConfig(items []v1alpha1.ConfigItem) {
	w.in.DesiredConfig = items
}

// observe fills what the engine would read.
func (w *configWorld) observe() {
	o := &w.in.Observed
	st := &w.in.Status
	o.DesiredRevision = WithConfig(w.template, o.DesiredConfig)
	if c := st.Config; c != nil && c.SeenAt != nil && (w.seenAt == nil || !c.SeenAt.Time.Equal(*w.seenAt)) {
		// The content changed: every pod the Deployment has predates it.
		t := c.SeenAt.Time
		w.seenAt, w.stale = &t, w.pods
	}
	o.StalePods = 0
	if c := st.Config; c != nil && c.SeenAt != nil && (st.Phase == v1alpha1.PhasePromoting || c.Pinned) {
		o.StalePods = w.stale
	}
	o.DeploymentRevision = WithConfig(TemplateOf(o.DeploymentRevision), DeploymentConfig(st, o.DesiredConfig, w.stale))
	o.MissingCopies, o.LostCopies, o.StrayCopies = nil, nil, nil
	wanted := CopiesWanted(o.Name, st)
	if st.Config != nil {
		for _, cr := range st.Config.Contents {
			for _, it := range cr.Items {
				if !w.copies[it.Kind+"/"+CopyName(o.Name, it)] {
					o.MissingCopies = append(o.MissingCopies, it)
					if slices.Contains(w.lost, it) {
						o.LostCopies = append(o.LostCopies, it)
					}
				}
			}
		}
	}
	for name := range w.copies {
		if !wanted[name] {
			o.StrayCopies = append(o.StrayCopies, name)
		}
	}
	slices.Sort(o.StrayCopies)
}

func (w *configWorld) decide() Decision {
	w.t.Helper()
	w.observe()
	d := Decide(w.in)
	if d.NeedChecks {
		w.t.Fatalf("no checks expected: %+v", d.Measure)
	}
	w.in.Status = d.Status
	o := &w.in.Observed
	for _, a := range d.Actions {
		w.actions = append(w.actions, a)
		switch a := a.(type) {
		case SetWeights:
			o.Weights = a.Weights
			c := w.in.Status.Config
			w.sets = append(w.sets, setRecord{a.Weights, w.in.Status.StableRevision, c != nil && c.Pinned && c.Routed})
		case SetStablePaused:
			o.DeploymentPaused = a.Paused
			if !a.Paused && TemplateOf(o.DeploymentRevision) != w.template {
				// A new template rolls: its pods are new.
				o.DeploymentRevision, w.stale = w.template, 0
			}
		case EnsurePrevious:
			o.PreviousExists, o.PreviousRevision, o.PreviousReady = true, a.Revision, !w.previousStuck
			o.PreviousReplicas = max(a.Replicas, o.StableReplicas)
			if o.PreviousReady {
				o.PreviousAvailable = o.PreviousReplicas
			}
		case DeletePrevious:
			o.PreviousExists, o.PreviousRevision, o.PreviousReady, o.PreviousReplicas, o.PreviousAvailable = false, "", false, 0, 0
		case EnsureCanary:
			o.CanaryRevision, o.CanaryReplicas, o.CanaryReady = a.Revision, 1, true
		case ScaleCanaryDown:
			o.CanaryReplicas, o.CanaryReady = 0, false
		case EnsureConfigCopies:
			for _, it := range a.Items {
				if !slices.Contains(w.lost, it) {
					w.copies[it.Kind+"/"+CopyName(o.Name, it)] = true
				}
			}
		case DeleteConfigCopies:
			for _, n := range a.Names {
				delete(w.copies, n)
			}
		case RestartStalePods:
			if !w.pdbRefuses {
				w.stale = 0
			}
		}
	}
	return d
}

// run decides every second until done reports true, or fails after n.
func (w *configWorld) run(n int, done func() bool) {
	w.t.Helper()
	for i := 0; i < n; i++ {
		if done() {
			return
		}
		w.in.Now = w.in.Now.Add(time.Second)
		w.decide()
	}
	if !done() {
		w.t.Fatalf("not done after %d decisions: phase %s, weights %+v, message %q, config %+v", n, w.in.Status.Phase, w.in.Weights, w.in.Status.Message, w.in.Status.Config)
	}
}

// warnings decides n times, 2 s apart, and counts the warning Events
// whose message has substr.
func (w *configWorld) warnings(n int, substr string) int {
	events := 0
	for i := 0; i < n; i++ {
		w.in.Now = w.in.Now.Add(2 * time.Second)
		for _, a := range w.decide().Actions {
			if e, ok := a.(RecordEvent); ok && e.Warning && strings.Contains(e.Message, substr) {
				events++
			}
		}
	}
	return events
}

func (w *configWorld) act(kind v1alpha1.ActionKind) {
	w.in.Action = &ActionRequest{Kind: kind, By: "api:test", RequestID: string(kind) + w.in.Now.Format(time.RFC3339)}
	w.decide()
	w.in.Action = nil
}

func actionsOf[T Action](as []Action) []T {
	var out []T
	for _, a := range as {
		if t, ok := a.(T); ok {
			out = append(out, t)
		}
	}
	return out
}

// A ConfigMap change is a revision: canaried on copies of the new content
// while stable's share moves to stable's template on copies of stable's
// (the Deployment's own pods read the new content as soon as the kubelet
// delivers it, so they serve nobody); promoted by restarting the
// Deployment's pods that predate the change, after which traffic goes back
// to them and the pinned pods and old copies go.
func TestAConfigChangeIsCanariedOnCopiesWithStablePinned(t *testing.T) {
	w := newConfigWorld(t)
	w.decide()
	if w.in.Status.Config.Pinned || len(w.actions) != 0 {
		t.Fatalf("at rest with stable's content: want nothing done, got %v (config %+v)", w.actions, w.in.Status.Config)
	}
	b := cfg("app", "bbb")
	w.setConfig(b)
	w.decide()
	st := w.in.Status
	want := WithConfig("t1", b)
	if st.Phase != v1alpha1.PhaseProgressing || st.CanaryRevision != want {
		t.Fatalf("after the change: phase %s canary %s, want Progressing %s", st.Phase, st.CanaryRevision, want)
	}
	if !st.Config.Pinned {
		t.Fatalf("the content changed: stable's share must be pinned: %+v", st.Config)
	}
	canaries := actionsOf[EnsureCanary](w.actions)
	if len(canaries) == 0 || !SameConfig(canaries[0].Config, b) {
		t.Fatalf("the canary must read the copies of the new content: %v", canaries)
	}
	prev := actionsOf[EnsurePrevious](w.actions)
	if len(prev) == 0 || prev[0].Revision != WithConfig("t1", cfg("app", "aaa")) || !SameConfig(prev[0].Config, cfg("app", "aaa")) {
		t.Fatalf("stable's pinned pods must run stable's revision on stable's content: %v", prev)
	}
	if copies := actionsOf[EnsureConfigCopies](w.actions); len(copies) == 0 || !SameConfig(copies[0].Items, b) {
		t.Fatalf("the new content must be copied: %v", copies)
	}
	w.run(10, func() bool { return w.in.Status.Step == 0 && w.in.Weights.Canary == 10 })
	if got := w.in.Weights; got.Stable != 0 || got.Baseline != 90 {
		t.Fatalf("at 10%%: want stable's 90%% on the pinned pods (baseline slot) and none on the Deployment's, got %+v", got)
	}
	if a := (&decider{in: w.in, st: w.in.Status}).against(); a != "previous" {
		t.Fatalf("the canary must be compared with the pinned pods: against %q", a)
	}
	w.act(v1alpha1.ActionPromoteFull)
	w.run(20, func() bool {
		return w.in.Status.Phase == v1alpha1.PhaseSucceeded && !w.in.Observed.PreviousExists && w.in.Weights == plainStable
	})
	if restarts := actionsOf[RestartStalePods](w.actions); len(restarts) == 0 {
		t.Fatalf("the promotion must restart the Deployment's pods made before the change: %v", w.actions)
	}
	st = w.in.Status
	if st.StableRevision != want || st.Config.Pinned {
		t.Fatalf("promoted: stable %s pinned %v, want %s unpinned", st.StableRevision, st.Config.Pinned, want)
	}
	if w.copies["configmap/web-app-aaa"] || !w.copies["configmap/web-app-bbb"] {
		t.Fatalf("the old content's copy must go and the new one's stay: %v", w.copies)
	}
	pinnedSets := 0
	for i, s := range w.sets {
		if s.pinned {
			pinnedSets++
			if s.w.Stable != 0 {
				t.Errorf("routing %d %+v: the Deployment's pods get %d%% while stable's share is pinned", i, s.w, s.w.Stable)
			}
		}
		if s.stable == want && s.w.Baseline != 0 {
			t.Errorf("routing %d %+v: once %s is stable, the pinned pods of the old content serve nobody", i, s.w, want)
		}
	}
	if pinnedSets == 0 {
		t.Error("no routing was set while pinned: the assertions above checked nothing")
	}
}

// A config change rolled back leaves the Deployment's pods reading the bad
// content: stable's share stays on the pinned pods until the ConfigMap is
// reverted; then the Deployment's pods that predate the revert are
// restarted, and only once they are all up does the traffic go back to
// them.
func TestARolledBackConfigStaysPinnedUntilRevertedAndRestarted(t *testing.T) {
	w := newConfigWorld(t)
	w.decide()
	w.setConfig(cfg("app", "bad"))
	w.run(10, func() bool { return w.in.Weights.Canary == 10 })
	w.act(v1alpha1.ActionAbort)
	w.run(10, func() bool { return w.in.Status.Phase.Terminal() })
	for i := 0; i < 5; i++ {
		w.in.Now = w.in.Now.Add(time.Second)
		w.decide()
	}
	if got := w.in.Weights; got.Stable != 0 || got.Baseline != 100 || !w.in.Status.Config.Pinned {
		t.Fatalf("rolled back: want everyone on the pinned pods, got %+v (pinned %v)", got, w.in.Status.Config.Pinned)
	}
	if !strings.Contains(w.in.Status.Config.Message, "until the change is promoted, reverted or fixed") {
		t.Fatalf("the Flight must say what ends the pin: %q", w.in.Status.Config.Message)
	}
	// Reverted: the pods are restarted first, then unpinned.
	w.setConfig(cfg("app", "aaa"))
	w.decide()
	if w.in.Weights.Stable != 0 {
		t.Fatalf("the Deployment's pods got traffic before their restart: %+v", w.in.Weights)
	}
	if !w.in.Status.Config.Restarting && len(actionsOf[RestartStalePods](w.actions)) == 0 {
		t.Fatalf("the revert must restart the Deployment's pods: %+v", w.in.Status.Config)
	}
	w.run(10, func() bool { return w.in.Weights == plainStable && !w.in.Observed.PreviousExists })
	if w.in.Status.Config.Pinned {
		t.Fatalf("still pinned after the revert: %+v", w.in.Status.Config)
	}
}

// The canary's first share waits for stable's pinned pods: until they are
// up, the Deployment's (about to read the new content) would serve
// stable's share beside it, compared with nothing sound.
func TestTheCanaryWaitsForStablesPinnedPods(t *testing.T) {
	w := newConfigWorld(t)
	w.previousStuck = true
	w.decide()
	w.setConfig(cfg("app", "bbb"))
	for i := 0; i < 10; i++ {
		w.in.Now = w.in.Now.Add(time.Second)
		w.decide()
	}
	if w.in.Weights.Canary != 0 {
		t.Fatalf("the canary got %d%% before stable's pinned pods were up", w.in.Weights.Canary)
	}
	if m := w.in.Status.Config.Message; !strings.Contains(m, "stable's pods on stable's config (web-previous) are starting") {
		t.Fatalf("the Flight must say what it waits for: %q", m)
	}
}

// A new revision that reads a ConfigMap that does not exist is not
// canaried (its pods could not start): the Flight holds, saying which
// object and field, and nothing else changes.
func TestAMissingConfigMapHoldsTheNewRevision(t *testing.T) {
	w := newConfigWorld(t)
	w.decide()
	w.template = "t2"
	w.in.ConfigProblem = "configmap shop/extra (spec.template.spec.volumes[1].configMap.name) does not exist"
	w.decide()
	st := w.in.Status
	if st.Phase != v1alpha1.PhaseSucceeded || st.Hold == nil || st.Hold.Reason != v1alpha1.HoldConfigMissing || !strings.Contains(st.Hold.Message, "configmap shop/extra") {
		t.Fatalf("want a ConfigMissing hold at rest naming the object, got phase %s hold %+v", st.Phase, st.Hold)
	}
	if len(actionsOf[EnsureCanary](w.actions)) > 0 || len(actionsOf[SetWeights](w.actions)) > 0 {
		t.Fatalf("nothing may change: %v", w.actions)
	}
	w.in.ConfigProblem = ""
	w.decide()
	if w.in.Status.Phase != v1alpha1.PhaseProgressing {
		t.Fatalf("once it exists the revision is canaried: %s", w.in.Status.Phase)
	}
}

// A Flight that did not track config (taken over by an older fledge) gains
// its content as stable's: no canary of an unchanged template.
func TestAFlightFromBeforeConfigTrackingTakesItsContentAsStables(t *testing.T) {
	w := newConfigWorld(t)
	w.in.Status.Config, w.in.Status.StableRevision, w.in.Status.CanaryRevision = nil, "t1", "t1"
	w.in.DeploymentRevision = "t1"
	w.decide()
	st := w.in.Status
	if st.Phase != v1alpha1.PhaseSucceeded || st.StableRevision != WithConfig("t1", cfg("app", "aaa")) || st.Config == nil {
		t.Fatalf("want stable %s at rest, got %s %s (%+v)", WithConfig("t1", cfg("app", "aaa")), st.Phase, st.StableRevision, st.Config)
	}
}

// Stable's content changed before fledge could copy it (a new Flight, or
// fledge down): it cannot be pinned; the change is canaried all the same,
// against the Deployment's pods, and the Flight says so.
func TestALostCopyCanariesWithoutAPin(t *testing.T) {
	w := newConfigWorld(t)
	delete(w.copies, "configmap/web-app-aaa")
	w.lost = cfg("app", "aaa")
	w.setConfig(cfg("app", "bbb"))
	w.decide()
	st := w.in.Status
	if st.Phase != v1alpha1.PhaseProgressing || st.Config.Pinned {
		t.Fatalf("want the change canaried unpinned, got %s pinned %v", st.Phase, st.Config.Pinned)
	}
	if !strings.Contains(st.Config.Message, "changed before fledge copied it") {
		t.Fatalf("the Flight must say the content was lost: %q", st.Config.Message)
	}
}

// Revisions: the template's hash alone without config, "<template>-<config>"
// with it; the config part changes with any item's content.
func TestRevisionsNameTheirConfigContent(t *testing.T) {
	if got := WithConfig("t1", nil); got != "t1" {
		t.Fatalf("without config: %q", got)
	}
	a, b := WithConfig("t1", cfg("app", "aaa")), WithConfig("t1", cfg("app", "bbb"))
	if a == b || TemplateOf(a) != "t1" || TemplateOf(b) != "t1" {
		t.Fatalf("revisions %q %q", a, b)
	}
	long := v1alpha1.ConfigItem{Kind: ConfigKindConfigMap, Name: strings.Repeat("n", 300), Hash: "0123456789"}
	if n := CopyName("web", long); len(n) > 253 || !strings.HasSuffix(n, "-0123456789") {
		t.Fatalf("copy name %q (%d)", n, len(n))
	}
}

// A template that reads one more ConfigMap is a template change: the
// Deployment's pods read what they read before, unchanged, so nothing is
// pinned (and no pinned pods are started).
func TestATemplateReadingAnotherObjectPinsNothing(t *testing.T) {
	w := newConfigWorld(t)
	w.decide()
	w.template = "t2"
	w.setConfig(append(cfg("app", "aaa"), v1alpha1.ConfigItem{Kind: ConfigKindConfigMap, Name: "extra", Hash: "eee"}))
	w.decide()
	st := w.in.Status
	if st.Phase != v1alpha1.PhaseProgressing || st.Config.Pinned || len(actionsOf[EnsurePrevious](w.actions)) > 0 {
		t.Fatalf("phase %s pinned %v actions %v: want canaried, unpinned", st.Phase, st.Config.Pinned, w.actions)
	}
}

// A Flight from before config tracking keeps its rejected revision
// rejected: its revisions all gain the content.
func TestTakingConfigOverKeepsARejectedRevisionRejected(t *testing.T) {
	w := newConfigWorld(t)
	w.in.Status.Config, w.in.Status.StableRevision, w.in.Status.CanaryRevision = nil, "t1", "t2"
	w.in.Status.Phase, w.in.Status.RejectedRevision = v1alpha1.PhaseRolledBack, "t2"
	w.in.DeploymentRevision, w.template = "t1", "t2"
	w.decide()
	st := w.in.Status
	if st.Phase != v1alpha1.PhaseRolledBack || st.RejectedRevision != WithConfig("t2", cfg("app", "aaa")) {
		t.Fatalf("phase %s rejected %s: want the rejected revision kept (with its content), not canaried again", st.Phase, st.RejectedRevision)
	}
}

// Stale pods that cannot be restarted (a PodDisruptionBudget refusing
// every eviction) keep stable's share on the pinned pods, and past the
// progress deadline the Flight holds, saying what it waits for, once.
func TestARestartThatCannotFinishHoldsAndSaysWhy(t *testing.T) {
	w := newConfigWorld(t)
	w.decide()
	w.setConfig(cfg("app", "bad"))
	w.run(10, func() bool { return w.in.Weights.Canary == 10 })
	w.act(v1alpha1.ActionAbort)
	w.run(10, func() bool { return w.in.Status.Phase.Terminal() })
	w.pdbRefuses = true
	w.setConfig(cfg("app", "aaa"))
	events := w.warnings(200, "not all restarted")
	st := w.in.Status
	if !st.Config.Pinned || w.in.Weights.Stable != 0 {
		t.Fatalf("pinned %v weights %+v: stable's share must stay on the pinned pods", st.Config.Pinned, w.in.Weights)
	}
	if st.Hold == nil || st.Hold.Reason != v1alpha1.HoldStableStalled || !strings.Contains(st.Hold.Message, "PodDisruptionBudget") {
		t.Fatalf("hold %+v: want StableRolloutStalled saying why", st.Hold)
	}
	if events != 1 {
		t.Fatalf("%d warning Events for the stalled restart: want one", events)
	}
}

// Stable's pinned pods that never come up: the canary cannot take a share
// and is rolled back at the progress deadline, saying why; at rest the
// Deployment's pods, which read the rejected content, serve everyone, and
// the Flight holds, once, saying so and what would end it.
func TestPinnedPodsThatNeverComeUpAreSaidLoudly(t *testing.T) {
	w := newConfigWorld(t)
	w.previousStuck = true
	w.decide()
	w.setConfig(cfg("app", "bad"))
	w.in.PreviousTrouble = "0/2 pods: ImagePullBackOff"
	events := w.warnings(400, "are not ready after")
	st := w.in.Status
	if st.Phase != v1alpha1.PhaseRolledBack || w.in.Weights.Canary != 0 {
		t.Fatalf("phase %s weights %+v: want rolled back", st.Phase, w.in.Weights)
	}
	if !strings.Contains(st.Decisions[len(st.Decisions)-1].Message+st.Message, "ImagePullBackOff") && !strings.Contains(st.Config.Message, "ImagePullBackOff") {
		t.Errorf("the pinned pods' trouble is said nowhere: %q / %q", st.Message, st.Config.Message)
	}
	if st.Hold == nil || st.Hold.Reason != v1alpha1.HoldStableStalled || !strings.Contains(st.Hold.Message, "until the config is reverted") {
		t.Fatalf("hold %+v: want one saying the Deployment's pods serve unpromoted config", st.Hold)
	}
	if events != 1 {
		t.Fatalf("%d warnings: want one", events)
	}
}

// A revision that reads a missing ConfigMap arriving during a canary does
// not restart it: the canary in flight goes on.
func TestAMissingConfigMapDoesNotRestartACanaryInFlight(t *testing.T) {
	w := newConfigWorld(t)
	w.decide()
	w.setConfig(cfg("app", "bbb"))
	w.run(10, func() bool { return w.in.Weights.Canary == 10 })
	canary := w.in.Status.CanaryRevision
	w.template = "t3"
	w.in.ConfigProblem = "configmap shop/extra (spec.template.spec.volumes[1].configMap.name) does not exist"
	w.in.Now = w.in.Now.Add(time.Second)
	w.decide()
	if st := w.in.Status; st.CanaryRevision != canary || st.Phase != v1alpha1.PhaseProgressing || w.in.Weights.Canary != 10 {
		t.Fatalf("canary %s phase %s weights %+v: want %s going on at 10%%", st.CanaryRevision, st.Phase, w.in.Weights, canary)
	}
}
