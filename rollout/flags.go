package rollout

import (
	"fmt"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fledgehq/fledge/flags"
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

// routing is the routing a Flight wants at canary weight canary: the
// split, plus the cohort's match route during a cohort stage, or the
// sticky cookie's during weighted steps. A Flight at rest, starting or
// promoting wants a plain split.
func (d *decider) routing(canary int32) traffic.Weights {
	w := traffic.Weights{Stable: 100 - canary, Canary: canary}
	if d.st.Phase != PhaseProgressing && d.st.Phase != PhasePaused {
		return w
	}
	if c := cohortOf(&d.st); c != nil {
		w.Cohort = traffic.Cohort{Name: c.Name, Header: c.Header, Exact: c.Exact, Regex: c.Regex}
		return w
	}
	if s := d.in.Policy.Sticky; s != nil && d.st.Step >= 0 && canary > 0 && canary < 100 {
		w.Sticky = traffic.Sticky{Cookie: s.Cookie, Value: d.st.CanaryRevision, MaxAge: s.MaxAge}
	}
	return w
}

// plainStable is all traffic on stable, no match routes.
var plainStable = traffic.Weights{Stable: 100}

// planCohorts fixes a new revision's cohort stages and release flags.
func (d *decider) planCohorts() {
	p := d.in.Policy
	d.st.Cohorts = nil
	steps := make([]int32, 0, len(p.Cohorts)+len(p.Steps))
	for _, c := range p.Cohorts {
		d.st.Cohorts = append(d.st.Cohorts, CohortStage{
			Name: c.Name, Header: c.Route.Header, Exact: c.Route.Exact, Regex: c.Route.Regex,
			Attribute: c.Attribute, Value: c.Value,
			MinDuration: metav1Duration(c.MinDuration), MinSamples: c.MinSamples,
		})
		steps = append(steps, 0)
	}
	d.st.Steps = append(steps, p.Steps...)
	d.st.Flags = nil
	for _, rf := range p.ReleaseFlags {
		d.st.Flags = append(d.st.Flags, FlagStatus{
			ConfigMap: rf.ConfigMap, Key: rf.Key, Flag: rf.Link.Flag,
			On: rf.Link.On, Off: rf.Link.Off, BucketBy: rf.Link.BucketBy, Final: rf.Final,
		})
	}
}

func (f *FlagStatus) link() flags.Link {
	return flags.Link{Flag: f.Flag, On: f.On, Off: f.Off, BucketBy: f.BucketBy}
}

// flagStage is what the linked flags serve in the status's stage: the
// on-variant to the cohort during a cohort stage, to the canary's share
// of users during weighted steps, the final variant once promoting, and
// the off-variant otherwise (before traffic, rolled back, aborted).
func (d *decider) flagStage(f *FlagStatus) flags.Stage {
	switch d.st.Phase {
	case PhaseProgressing, PhasePaused:
		if c := cohortOf(&d.st); c != nil {
			return flags.Stage{Kind: flags.StageCohort, Attribute: c.Attribute, Value: c.Value}
		}
		if d.st.Step >= 0 && d.st.CanaryWeight > 0 {
			return flags.Stage{Kind: flags.StageWeighted, Weight: d.st.CanaryWeight}
		}
	case PhasePromoting, PhaseSucceeded:
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
// left (Applied) or is writing (Pending); the first look of a revision
// takes the flag as found. Anything else is a person's edit: it is
// reported, never overwritten. A ConfigMap, key or flag that cannot be
// read, or a document flagd would refuse, writes nothing.
func (d *decider) syncFlags(write bool) {
	if len(d.st.Flags) == 0 || d.st.Phase == PhaseInitializing {
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
	for _, k := range order {
		obs, read := d.in.FlagDocs[k]
		doc := []byte(obs.Doc)
		var changed []string
		for _, i := range group[k] {
			f := &d.st.Flags[i]
			stage := d.flagStage(f)
			serving := flags.Serving(f.link(), stage)
			if f.State == FlagLeftAlone {
				continue
			}
			if d.st.Phase.Terminal() && f.Serving == serving && (f.State == FlagInSync || f.State == FlagEdited) {
				// At rest the flag is the team's again.
				continue
			}
			f.Serving = serving
			where := fmt.Sprintf("flag %q in configmap %s/%s key %s", f.Flag, d.in.Namespace, f.ConfigMap, f.Key)
			if !read || obs.Err != "" {
				f.State, f.Message = FlagUnreadable, fmt.Sprintf("release flag %q: %s", f.Flag, orNotRead(read, obs.Err))
				continue
			}
			cur, err := flags.DefinitionHash(doc, f.Flag)
			if err != nil {
				f.State, f.Message = FlagUnreadable, where+": "+err.Error()
				continue
			}
			next, err := flags.Rewrite(doc, f.link(), stage)
			if err != nil {
				f.State, f.Message = FlagUnreadable, where+": "+err.Error()
				continue
			}
			want, _ := flags.DefinitionHash(next, f.Flag)
			if f.State == "" && f.Applied == "" && stage.Kind != flags.StageFinal {
				if final, err := flags.Rewrite(doc, f.link(), flags.Stage{Kind: flags.StageFinal, Variant: f.Final}); err == nil {
					if h, _ := flags.DefinitionHash(final, f.Flag); h == cur && cur != want {
						f.State = FlagLeftAlone
						f.Message = fmt.Sprintf("%s already serves its final variant %q (released by an earlier rollout): left alone for this revision", where, f.Final)
						continue
					}
				}
			}
			switch {
			case cur == want:
				f.State, f.Applied, f.Pending, f.Message = FlagInSync, cur, "", ""
			case f.Applied == "" || cur == f.Applied || cur == f.Pending:
				f.State, f.Message = FlagWriting, ""
				if write {
					f.Applied, f.Pending = cur, want
					doc = next
					changed = append(changed, f.Flag)
				}
			default:
				f.State = FlagEdited
				f.Message = fmt.Sprintf("%s was changed by someone else since fledge last set it; fledge will not overwrite it (this stage wants it to serve %s): put it back, or abort the rollout", where, f.Serving)
			}
		}
		if len(changed) > 0 {
			d.do(WriteFlags{ConfigMap: strings.SplitN(k, "/", 2)[0], Key: strings.SplitN(k, "/", 2)[1], ResourceVersion: obs.ResourceVersion, Doc: string(doc), Flags: changed})
		}
	}
}

func orNotRead(read bool, err string) string {
	if !read {
		return "not read"
	}
	return err
}

// flagTrouble returns the hold that the linked flags call for, if any:
// one that someone else edited, or one that cannot be read.
func (d *decider) flagTrouble() (reason, msg string) {
	for _, f := range d.st.Flags {
		switch f.State {
		case FlagEdited:
			return HoldFlagEdited, f.Message
		case FlagUnreadable:
			return HoldFlagUnreadable, f.Message
		}
	}
	return "", ""
}

// flagsWriting reports whether a linked flag has not reached its stage yet.
func (d *decider) flagsWriting() (string, bool) {
	for _, f := range d.st.Flags {
		if f.State == FlagWriting {
			return f.Flag, true
		}
	}
	return "", false
}

// gateHold reports whether a hold is one that waits at a gate (a webhook
// or flag gate, or a release flag in trouble): judging a round does not
// clear it; moving on does.
func gateHold(h *Hold) bool {
	if h == nil {
		return false
	}
	switch h.Reason {
	case HoldGate, HoldFlagGate, HoldFlagGateUnreadable, HoldFlagEdited, HoldFlagUnreadable:
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
			d.hold(HoldFlagGate, msg)
			d.st.Message = msg
		default:
			why := "not evaluated"
			if ok {
				why = g.Reason
			}
			msg := fmt.Sprintf("flag gate %q cannot be read (%s): holding before %s; a gate that cannot be read never lets a rollout through", name, why, d.nextMove())
			d.hold(HoldFlagGateUnreadable, msg)
			d.st.Message = msg
		}
		d.after(2 * time.Second)
		return false
	}
	if d.st.Hold != nil && d.st.Hold.Reason != HoldGate && gateHold(d.st.Hold) {
		d.st.Hold = nil
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
	case next >= len(d.st.Steps):
		return "promotion"
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
		note := f.Flag + ": " + flags.Serving(f.link(), d.flagStage(f))
		switch f.State {
		case FlagLeftAlone:
			note = f.Flag + ": left alone (already at its final variant " + f.Final + ")"
		case FlagEdited:
			note += " wanted; left as edited by someone else"
		case FlagUnreadable:
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
		d.st.Decisions[i].Flags = copyStrings(notes)
	}
	for i := range d.st.Outbox {
		if n := d.st.Outbox[i].Notification; n != nil && slices.Contains(d.newOutbox, d.st.Outbox[i].ID) {
			n.Flags = copyStrings(notes)
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
