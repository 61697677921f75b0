package rollout

import (
	"fmt"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fledgehq/fledge/flags"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	"github.com/fledgehq/fledge/traffic"
)

// Feature flags in the decision core: cohort stages and sticky users are
// part of the routing a status wants (routing); release flags follow the
// same status (flagStage), written in the same decision as the routing
// they go with; flag gates are asked before every move forward.

// FlagDoc is a release flags ConfigMap key as read for a decision.
type FlagDoc struct {
	Doc             string
	ResourceVersion string
	// Err says why it could not be read, or why the document is not a
	// valid flagd document; nothing is written then.
	Err string
}

// FlagDocKey names a ConfigMap key in Input.FlagDocs.
func FlagDocKey(configMap, key string) string { return configMap + "/" + key }

// FlagID names a flag of a ConfigMap key in Input.FlagsInUse.
func FlagID(configMap, key, flag string) string { return configMap + "/" + key + "/" + flag }

// routing is the routing a Flight wants at canary weight canary: the
// split, plus the cohort's match route during a cohort stage, or the
// sticky cookie's during weighted steps. A Flight at rest, starting or
// promoting wants a plain split.
func (d *decider) routing(canary int32) traffic.Weights {
	w := d.routingOf(canary)
	if d.onPrevious() && w.Baseline == 0 {
		// A watch's revert stands: the previous revision's pods serve
		// stable's share. (No mirror then: copies would come from the
		// split, which has no stable share to copy; a fix's mirror stage
		// is not planned while a revert stands.)
		w.Baseline, w.Stable, w.Mirror, w.MirrorCompared = w.Stable, 0, 0, false
	}
	return w
}

func (d *decider) routingOf(canary int32) traffic.Weights {
	if d.st.CanaryWithdrawn && (d.st.Phase == v1alpha1.PhaseProgressing || d.st.Phase == v1alpha1.PhasePaused) {
		return plainStable // no pod to serve the canary's share (withdraw)
	}
	return d.stepRouting(canary)
}

// stepRouting is the routing of a canary share, withdrawn or not.
func (d *decider) stepRouting(canary int32) traffic.Weights {
	w := traffic.Weights{Stable: 100 - canary, Canary: canary}
	if d.st.Phase != v1alpha1.PhaseProgressing && d.st.Phase != v1alpha1.PhasePaused {
		return w
	}
	if c := CohortOf(&d.st); c != nil {
		if c.Mirror > 0 {
			w.Mirror = c.Mirror // copies only: nobody reaches the canary
			w.MirrorCompared = c.Compared
			return w
		}
		if c.Host != "" {
			return w // the preview's own host reaches it: no match route
		}
		w.Cohort = traffic.Cohort{Name: c.Name, Header: c.Header, Exact: c.Exact, Regex: c.Regex}
		return w
	}
	if s := d.st.Sticky; s != nil && d.st.Step >= 0 && canary > 0 && canary < 100 {
		w.Sticky = traffic.Sticky{Cookie: s.Cookie, Value: d.st.CanaryRevision, MaxAge: s.MaxAge}
	}
	if d.st.Baseline == BaselineFresh && d.st.Step >= 0 && canary > 0 && 2*canary <= 100 {
		// The baseline serves as large a share as the canary, from
		// stable's.
		w.Baseline, w.Stable = canary, 100-2*canary
	}
	return w
}

// plainStable is all traffic on stable, no match routes.
var plainStable = traffic.Weights{Stable: 100}

// planCohorts fixes a new revision's cohort stages, sticky cookie and
// release flags; inFlight says whether it replaces a revision in flight.
func (d *decider) planCohorts(inFlight bool) {
	p := d.in.Policy
	d.st.Cohorts, d.st.BlueGreen = nil, nil
	d.st.Baseline = p.Baseline
	pinned := d.st.Config != nil && d.st.Config.Pinned
	if d.watchState() == v1alpha1.WatchReverted || pinned {
		// The previous revision's pods serve in stable's place, in the
		// baseline's slot of the routing: they are what it is compared
		// with (a copy of them would add nothing).
		d.st.Baseline = ""
	}
	cohorts, planned := p.Cohorts, p.Steps
	if p.Mirror != nil && (p.Strategy != StrategyCanary || d.watchState() != v1alpha1.WatchReverted && !pinned) {
		// The mirror stage comes first: copies of the requests before
		// any user reaches the canary.
		cohorts = append([]Cohort{*p.Mirror}, cohorts...)
	}
	if bg := p.BlueGreen; bg != nil {
		// The preview is a cohort stage; the switch, a step at 100%.
		cohorts, planned = []Cohort{bg.Preview}, []int32{100}
		d.st.BlueGreen = &v1alpha1.BlueGreenPlan{PostPromotion: metav1Duration(bg.PostPromotion), ScaleDownDelay: metav1Duration(bg.ScaleDownDelay)}
	}
	steps := make([]int32, 0, len(cohorts)+len(planned))
	for _, c := range cohorts {
		d.st.Cohorts = append(d.st.Cohorts, v1alpha1.CohortStage{
			Name: c.Name, Header: c.Route.Header, Exact: c.Route.Exact, Regex: c.Route.Regex, Host: PreviewHost(c.Host, d.in.Name),
			Attribute: c.Attribute, Value: c.Value,
			MinDuration: metav1Duration(c.MinDuration), MinSamples: c.MinSamples, Mirror: c.Mirror, Compared: c.Compared,
		})
		steps = append(steps, 0)
	}
	d.st.Steps = append(steps, planned...)
	d.st.Sticky = nil
	if p.Sticky != nil {
		d.st.Sticky = &v1alpha1.StickyCookie{Cookie: p.Sticky.Cookie, MaxAge: p.Sticky.MaxAge}
	}
	// A revision that replaces one in flight inherits what fledge knew of
	// each flag it keeps linking (what it last set, what someone else
	// edited): only a revision started from rest takes flags as found.
	prev := map[string]v1alpha1.FlagStatus{}
	if inFlight {
		for _, f := range d.st.Flags {
			prev[FlagID(f.ConfigMap, f.Key, f.Flag)] = f
		}
	}
	d.st.Flags = nil
	for _, rf := range p.ReleaseFlags {
		f := v1alpha1.FlagStatus{
			ConfigMap: rf.ConfigMap, Key: rf.Key, Flag: rf.Link.Flag,
			On: rf.Link.On, Off: rf.Link.Off, BucketBy: rf.Link.BucketBy, Final: rf.Final,
		}
		if old, ok := prev[FlagID(rf.ConfigMap, rf.Key, rf.Link.Flag)]; ok && old.State != v1alpha1.FlagLeftAlone {
			f.State, f.Applied, f.Pending, f.Message = old.State, old.Applied, old.Pending, old.Message
		}
		d.st.Flags = append(d.st.Flags, f)
	}
}

// linkOf is the flags package's view of a linked flag.
func linkOf(f *v1alpha1.FlagStatus) flags.Link {
	return flags.Link{Flag: f.Flag, On: f.On, Off: f.Off, BucketBy: f.BucketBy, Final: f.Final}
}

// flagStage is what the linked flags serve in the status's stage: the
// on-variant to the cohort during a cohort stage, to the canary's share
// of users during weighted steps, the final variant once promoting, and
// the off-variant otherwise (before traffic, rolled back, aborted).
func (d *decider) flagStage(f *v1alpha1.FlagStatus) flags.Stage {
	switch d.st.Phase {
	case v1alpha1.PhaseProgressing, v1alpha1.PhasePaused:
		if c := CohortOf(&d.st); c != nil && c.Mirror == 0 && c.Host == "" {
			return flags.Stage{Kind: flags.StageCohort, Attribute: c.Attribute, Value: c.Value}
		}
		if d.st.Step >= 0 && d.st.CanaryWeight > 0 {
			return flags.Stage{Kind: flags.StageWeighted, Weight: d.st.CanaryWeight}
		}
	case v1alpha1.PhasePromoting, v1alpha1.PhaseSucceeded:
		return flags.Stage{Kind: flags.StageFinal, Variant: f.Final}
	}
	return flags.Stage{Kind: flags.StageOff}
}

// syncFlags compares each linked flag with what its stage wants, from the
// ConfigMaps as read. With write set, it asks for the stage's targeting
// to be written, one compare-and-swap per ConfigMap (on the
// resourceVersion read): a concurrent write fails it as a whole, and the
// next look decides again from a fresh read.
//
// A flag is fledge's to change only while its definition is one fledge
// left (Applied) or is writing (Pending); a revision started from rest
// takes the flag as found (a revision replacing one in flight inherits
// what fledge knew: see planCohorts). Anything else is someone else's
// edit: it is reported, never overwritten. A ConfigMap, key or flag that
// cannot be read, or a document flagd would refuse, writes nothing. At
// rest, fledge only finishes what it started (the off-variant after a
// rollback, the final one after a promotion) and never writes a flag it
// has not set itself.
func (d *decider) syncFlags(write bool) {
	if len(d.st.Flags) == 0 || d.st.Phase == v1alpha1.PhaseInitializing {
		return
	}
	var order []string
	group := map[string][]int{}
	for i, f := range d.st.Flags {
		k := FlagDocKey(f.ConfigMap, f.Key)
		if _, ok := group[k]; !ok {
			order = append(order, k)
		}
		group[k] = append(group[k], i)
	}
	atRest := d.st.Phase.Terminal()
	for _, k := range order {
		obs, read := d.in.FlagDocs[k]
		doc := []byte(obs.Doc)
		var changed []string
		for _, i := range group[k] {
			f := &d.st.Flags[i]
			before := f.State
			stage := d.flagStage(f)
			serving := flags.Serving(linkOf(f), stage)
			if f.State == v1alpha1.FlagLeftAlone {
				continue
			}
			if atRest && f.Serving == serving && f.State == v1alpha1.FlagInSync {
				continue // done: at rest the flag is the team's again
			}
			f.Serving = serving
			where := fmt.Sprintf("flag %q in configmap %s/%s key %s", f.Flag, d.in.Namespace, f.ConfigMap, f.Key)
			d.classifyFlag(f, where, read, obs, doc, stage, write && !(atRest && f.Applied == ""), &doc, &changed)
			if write && f.State != before && (f.State == v1alpha1.FlagEdited || f.State == v1alpha1.FlagUnreadable) &&
				d.st.Phase != v1alpha1.PhaseProgressing && d.st.Phase != v1alpha1.PhasePaused {
				// (While in flight, the hold it causes says so.)
				d.event(true, "Flag"+string(f.State), f.Message)
			}
		}
		if len(changed) > 0 {
			cm, key, _ := strings.Cut(k, "/")
			d.do(WriteFlags{ConfigMap: cm, Key: key, ResourceVersion: obs.ResourceVersion, Doc: string(doc), Flags: changed})
		}
	}
}

// classifyFlag sets a linked flag's state from the document as read and,
// when write allows, asks for the stage's definition (updating *out and
// *changed).
func (d *decider) classifyFlag(f *v1alpha1.FlagStatus, where string, read bool, obs FlagDoc, doc []byte, stage flags.Stage, write bool, out *[]byte, changed *[]string) {
	if other, ok := d.in.FlagsInUse[FlagID(f.ConfigMap, f.Key, f.Flag)]; ok && f.Applied == "" {
		f.State, f.Message = v1alpha1.FlagInUse, fmt.Sprintf("%s is being stepped by Flight %s, whose rollout started first: one flag follows one rollout at a time; waiting for it to end", where, other)
		return
	}
	if !read || obs.Err != "" {
		f.State, f.Message = v1alpha1.FlagUnreadable, fmt.Sprintf("release flag %q: %s", f.Flag, obs.Err)
		if !read {
			f.Message = fmt.Sprintf("release flag %q: configmap %s/%s: not read", f.Flag, d.in.Namespace, f.ConfigMap)
		}
		return
	}
	cur, err := flags.DefinitionHash(doc, f.Flag)
	if err != nil {
		f.State, f.Message = v1alpha1.FlagUnreadable, where+": "+err.Error()
		return
	}
	next, err := flags.Rewrite(doc, linkOf(f), stage)
	if err != nil {
		f.State, f.Message = v1alpha1.FlagUnreadable, where+": "+err.Error()
		return
	}
	want, _ := flags.DefinitionHash(next, f.Flag)
	if (f.State == "" || f.State == v1alpha1.FlagInUse) && f.Applied == "" && stage.Kind != flags.StageFinal {
		if final, err := flags.Rewrite(doc, linkOf(f), flags.Stage{Kind: flags.StageFinal, Variant: f.Final}); err == nil {
			if h, _ := flags.DefinitionHash(final, f.Flag); h == cur && cur != want {
				f.State = v1alpha1.FlagLeftAlone
				f.Message = fmt.Sprintf("%s already serves its final variant %q (released by an earlier rollout): left alone for this revision", where, f.Final)
				return
			}
		}
	}
	switch {
	case cur == want:
		f.State, f.Applied, f.Pending, f.Message, f.WritingSince = v1alpha1.FlagInSync, cur, "", "", nil
	case f.Applied == "" && d.st.Phase.Terminal():
		// Never set by fledge, and the rollout is over: not fledge's.
		f.State, f.Message = v1alpha1.FlagUnreadable, fmt.Sprintf("%s: fledge never set it during this revision and leaves it as it is", where)
	case f.Applied == "" || cur == f.Applied || cur == f.Pending:
		f.State, f.Message = v1alpha1.FlagWriting, ""
		if f.Pending != want || f.WritingSince == nil {
			t := d.now()
			f.WritingSince = &t
		}
		if d.in.Now.Sub(f.WritingSince.Time) >= flagWriteDeadline {
			f.Message = fmt.Sprintf("%s: written for %s without taking effect (an immutable ConfigMap, or an update refused?): see fledge's log; retrying", where, flagWriteDeadline)
		}
		if write {
			f.Applied, f.Pending = cur, want
			*out = next
			*changed = append(*changed, f.Flag)
		}
	default:
		f.State = v1alpha1.FlagEdited
		f.Message = fmt.Sprintf("%s was changed by someone else (a person, or another Flight linking the same flag) since fledge last set it; fledge will not overwrite it (this stage wants it to serve %s): put it back, or abort the rollout", where, f.Serving)
		f.WritingSince = nil
	}
}

// flagWriteDeadline is how long a flag write may go without taking effect
// before the rollout holds and says so.
const flagWriteDeadline = 30 * time.Second

// flagTrouble returns the hold that the linked flags call for, if any:
// one that someone else edited, or one that cannot be read.
func (d *decider) flagTrouble() (reason, msg string) {
	for _, f := range d.st.Flags {
		switch f.State {
		case v1alpha1.FlagEdited:
			return v1alpha1.HoldFlagEdited, f.Message
		case v1alpha1.FlagUnreadable:
			return v1alpha1.HoldFlagUnreadable, f.Message
		case v1alpha1.FlagInUse:
			return v1alpha1.HoldFlagInUse, f.Message
		case v1alpha1.FlagWriting:
			if f.WritingSince != nil && d.in.Now.Sub(f.WritingSince.Time) >= flagWriteDeadline {
				return v1alpha1.HoldFlagUnreadable, f.Message
			}
		}
	}
	return "", ""
}

// flagsWriting reports whether a linked flag has not reached its stage yet.
func (d *decider) flagsWriting() (string, bool) {
	for _, f := range d.st.Flags {
		if f.State == v1alpha1.FlagWriting {
			return f.Flag, true
		}
	}
	return "", false
}

// gateHold reports whether a hold is one that waits at a gate (a webhook
// or flag gate, a release flag in trouble, the canary's pods for its next
// share): judging a round does not clear it; moving on does.
func gateHold(h *v1alpha1.Hold) bool {
	if h == nil {
		return false
	}
	switch h.Reason {
	case v1alpha1.HoldGate, v1alpha1.HoldFlagGate, v1alpha1.HoldFlagGateUnreadable, v1alpha1.HoldFlagEdited, v1alpha1.HoldFlagUnreadable, v1alpha1.HoldFlagInUse,
		// Past the analysis deadline: said once, and kept until a move
		// (a verdict after all) clears it.
		v1alpha1.HoldInsufficientEvidence,
		// Waiting for the canary's pods for its next share, or for an
		// autoscaler on fledge's own Deployments to go: kept, so that
		// the progress deadline counts from the first time.
		v1alpha1.HoldCanaryScaling, v1alpha1.HoldForeignAutoscaler:
		return true
	}
	return false
}

// flagsAllowMove checks, before a move forward, that the linked flags
// serve the current stage and that every flag gate is open. Otherwise it
// holds (or, while a write is in flight, waits a moment) and reports
// false.
func (d *decider) flagsAllowMove() bool {
	if reason, msg := d.flagTrouble(); reason != "" {
		d.hold(reason, msg)
		d.st.Message = msg
		d.after(2 * time.Second)
		return false
	}
	if flag, writing := d.flagsWriting(); writing {
		d.st.Message = fmt.Sprintf("waiting for release flag %q to serve the current stage", flag)
		d.after(time.Second)
		return false
	}
	for _, name := range d.in.Policy.FlagGates {
		g, ok := d.gateResult(name)
		switch {
		case ok && g.Verdict == flags.Open:
			continue
		case ok && g.Verdict == flags.Closed:
			msg := fmt.Sprintf("flag gate %q is false (variant %q): holding before %s", name, g.Variant, d.nextMove())
			d.hold(v1alpha1.HoldFlagGate, msg)
			d.st.Message = msg
		default:
			why := "not evaluated"
			if ok {
				why = g.Reason
			}
			msg := fmt.Sprintf("flag gate %q cannot be read (%s): holding before %s; a gate that cannot be read never lets a rollout through", name, why, d.nextMove())
			d.hold(v1alpha1.HoldFlagGateUnreadable, msg)
			d.st.Message = msg
		}
		d.after(2 * time.Second)
		return false
	}
	if h := d.st.Hold; gateHold(h) && h.Reason != v1alpha1.HoldGate && h.Reason != v1alpha1.HoldCanaryScaling && h.Reason != v1alpha1.HoldForeignAutoscaler {
		d.st.Hold = nil // the flags' (the others are cleared by what they wait for)
	}
	return true
}

func (d *decider) gateResult(flag string) (flags.GateResult, bool) {
	for _, g := range d.in.Gates {
		if g.Flag == flag {
			return g, true
		}
	}
	return flags.GateResult{}, false
}

// nextMove names the move a gate holds: the next stage, or promotion.
func (d *decider) nextMove() string {
	next := int(d.st.Step) + 1
	switch {
	case d.st.BlueGreen != nil && next == 0:
		return "the preview"
	case d.previewing():
		return "the switch of all traffic to the new revision"
	case next >= len(d.st.Steps):
		return "promotion"
	case next < len(d.st.Cohorts) && d.st.Cohorts[next].Mirror > 0:
		return "the mirror stage"
	case next < len(d.st.Cohorts):
		return fmt.Sprintf("cohort stage %q", d.st.Cohorts[next].Name)
	default:
		return fmt.Sprintf("raising the canary to %d%%", d.st.Steps[next])
	}
}

// flagNotes says what each linked flag serves, for the decision log and
// messages: "new-checkout: on for 20% of users".
func (d *decider) flagNotes() []string {
	if len(d.st.Flags) == 0 {
		return nil
	}
	out := make([]string, 0, len(d.st.Flags))
	for i := range d.st.Flags {
		f := &d.st.Flags[i]
		note := f.Flag + ": " + flags.Serving(linkOf(f), d.flagStage(f))
		switch f.State {
		case v1alpha1.FlagLeftAlone:
			note = f.Flag + ": left alone (already at its final variant " + f.Final + ")"
		case v1alpha1.FlagEdited:
			note += " wanted; left as edited by someone else"
		case v1alpha1.FlagUnreadable:
			note += " wanted; cannot be read"
		}
		out = append(out, note)
	}
	return out
}

// noteFlags writes the flags as this decision leaves them into the
// decision records and notifications it added.
func (d *decider) noteFlags() {
	notes := d.flagNotes()
	if notes == nil {
		return
	}
	for i := max(len(d.st.Decisions)-d.newRecords, 0); i < len(d.st.Decisions); i++ {
		d.st.Decisions[i].Flags = slices.Clone(notes)
	}
	for i := range d.st.Outbox {
		if n := d.st.Outbox[i].Notification; n != nil && slices.Contains(d.newOutbox, d.st.Outbox[i].ID) {
			n.Flags = slices.Clone(notes)
		}
	}
}

func metav1Duration(d time.Duration) metav1.Duration { return metav1.Duration{Duration: d} }

// flagWritesLast moves flag writes behind every other action of the
// decision: the routing comes first, whatever happens to a write (the
// executor stops at the first failing action), and messages are handed
// to the runner even while a ConfigMap refuses writes.
func (d *decider) flagWritesLast() {
	if !slices.ContainsFunc(d.actions, func(a Action) bool { _, ok := a.(WriteFlags); return ok }) {
		return
	}
	var writes []Action
	rest := d.actions[:0:0]
	for _, a := range d.actions {
		if _, ok := a.(WriteFlags); ok {
			writes = append(writes, a)
		} else {
			rest = append(rest, a)
		}
	}
	d.actions = append(rest, writes...)
}
