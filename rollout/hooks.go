package rollout

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fledgehq/fledge/analysis"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	"github.com/fledgehq/fledge/webhooks"
)

// Hook calls in the decision core.
//
// Decide cannot call anything; it asks. Each call it needs has an ID
// derived from what makes it unique (the Flight, the revision, the hook,
// the step and the round or gate round), and goes through three states:
//
//  1. Not in the status: Decide records it Pending and emits CallHook.
//     Because the status is written before actions run, the call is on
//     record before it is made.
//  2. Pending: the answer is in Input.Calls (the runner got it), so
//     Decide records it; or it is not, and Decide emits CallHook again,
//     which the runner ignores while the call runs. After a restart the
//     runner has no memory of it and calls again under the same ID, which
//     receivers deduplicate.
//  3. Answered: Decide uses the record and never calls again.

// callID derives a delivery id: unique across Flights and revisions,
// and the same every time Decide asks for the same call.
func (d *decider) callID(parts ...any) string {
	h := sha256.New()
	fmt.Fprint(h, d.in.UID, "/", d.in.Namespace, "/", d.in.Name, "/", d.st.CanaryRevision)
	for _, p := range parts {
		fmt.Fprint(h, "/", p)
	}
	return hex.EncodeToString(h.Sum(nil))[:24]
}

// hookCallID is callID(h.Type, h.Name, step, round), remembered for the
// rest of the decision: a decision asks for the same hook's call several
// times (is the load running, is it due, what did it answer), and each
// callID is a hash of printed parts.
func (d *decider) hookCallID(h *Hook, step, round int32) string {
	k := hookCall{typ: h.Type, name: h.Name, revision: d.st.CanaryRevision, step: step, round: round}
	for i := range d.hookIDs {
		if d.hookIDs[i].hookCall == k {
			return d.hookIDs[i].id
		}
	}
	id := d.callID(h.Type, h.Name, step, round)
	d.hookIDs = append(d.hookIDs, hookID{k, id})
	return id
}

// hookCall is what a hook call's ID is derived from, with the Flight's
// identity (the same throughout a decision); hookID pairs it with the ID.
type hookCall struct {
	typ            webhooks.Type
	name, revision string
	step, round    int32
}

type hookID struct {
	hookCall
	id string
}

// hookResult returns the recorded answer of h's call for (step, round),
// starting or resuming the call if there is none yet.
func (d *decider) hookResult(h Hook, step, round int32) (v1alpha1.CallRecord, bool) {
	id := d.hookCallID(&h, step, round)
	for i := range d.st.Calls {
		rec := &d.st.Calls[i]
		if rec.ID != id {
			continue
		}
		if rec.State != v1alpha1.CallPending {
			return *rec, true
		}
		if res, ok := d.in.Calls[id]; ok {
			at := metav1.NewTime(res.At)
			rec.State, rec.Status, rec.Message, rec.Load, rec.Attempts, rec.Done = res.State, res.Status, res.Message, res.Load.DeepCopy(), res.Attempts, &at
			return *rec, true
		}
		d.callHook(id, h)
		return *rec, false
	}
	d.st.Calls = append(d.st.Calls, v1alpha1.CallRecord{ID: id, Hook: h.Name, Type: h.Type, Step: step, Round: round, State: v1alpha1.CallPending, Started: d.now()})
	d.pruneCalls()
	d.callHook(id, h)
	return d.st.Calls[len(d.st.Calls)-1], false
}

func (d *decider) callHook(id string, h Hook) {
	for _, a := range d.actions {
		if c, ok := a.(CallHook); ok && c.ID == id {
			return // asked twice in one decision (a gate checked twice)
		}
	}
	p := d.payload(h, "", d.st.Message)
	p.DeliveryID = id
	d.do(CallHook{ID: id, Hook: h, Secret: *d.in.Policy.WebhookSecret, Payload: p})
	// The runner looks the Flight up again when the answer comes; this
	// is the safety net if that is lost.
	d.after(min(h.Timeout+time.Second, 10*time.Second))
}

// runHooks asks every hook for (step, round). It reports the records and
// whether all have answered.
func (d *decider) runHooks(hooks []Hook, step, round int32) ([]v1alpha1.CallRecord, bool) {
	recs := make([]v1alpha1.CallRecord, 0, len(hooks))
	done := true
	for _, h := range hooks {
		rec, ok := d.hookResult(h, step, round)
		done = done && ok
		recs = append(recs, rec)
	}
	return recs, done
}

// waitForHooks says what a round is waiting for.
func (d *decider) waitForHooks(recs []v1alpha1.CallRecord) {
	var names []string
	for _, r := range recs {
		if r.State == v1alpha1.CallPending {
			names = append(names, fmt.Sprintf("%s hook %s", r.Type, r.Hook))
		}
	}
	d.st.Message = fmt.Sprintf("%s: waiting for %s", d.where(), strings.Join(names, ", "))
}

// pruneCalls bounds the call records, dropping the oldest answered calls
// that matter least: never a pending one, and passed gates last (a gate
// that passed is not asked again).
func (d *decider) pruneCalls() {
	for len(d.st.Calls) > MaxCalls {
		drop := -1
		for i, c := range d.st.Calls {
			if c.State != v1alpha1.CallPending && !(c.Type.Gate() && c.State == v1alpha1.CallOK) {
				drop = i
				break
			}
		}
		if drop < 0 {
			for i, c := range d.st.Calls {
				if c.State != v1alpha1.CallPending {
					drop = i
					break
				}
			}
		}
		if drop < 0 {
			return
		}
		d.st.Calls = append(d.st.Calls[:drop], d.st.Calls[drop+1:]...)
	}
}

// hookChecks turns hook answers into checks for the decision log and the
// judgement: a rollout hook's failure is a failed check. A call without a
// usable answer fails too, unless the hook says to hold on errors.
func hookChecks(hooks []Hook, recs []v1alpha1.CallRecord) []analysis.Check {
	var out []analysis.Check
	for i, r := range recs {
		h := hooks[i]
		at := r.Started.Time
		if r.Done != nil {
			at = r.Done.Time
		}
		c := analysis.Check{Metric: "hook:" + h.Name, Query: string(h.Type) + " " + h.URL, Threshold: "2xx", At: at}
		status := float64(r.Status)
		if r.Status != 0 {
			c.Value = &status
		}
		switch r.State {
		case v1alpha1.CallOK:
			c.Outcome = analysis.Pass
		case v1alpha1.CallRejected:
			c.Outcome, c.Message = analysis.Fail, r.Message
		default:
			c.Outcome, c.Message = analysis.Fail, r.Message
			if h.HoldOnError {
				c.Outcome = analysis.Error
			}
		}
		out = append(out, c)
		if r.State == v1alpha1.CallOK && h.Thresholds != nil {
			out = append(out, loadChecks(h, r, at)...)
		}
	}
	return out
}

// loadChecks judges a load test's figures against the hook's thresholds.
// An answer without figures cannot be judged: an error, not a pass. Only
// the canary's figures are judged: a run that loaded stable too (metadata
// stableUrl) reports stable's for people to see, and stable is no
// candidate whose load figures could hold or roll back a rollout.
func loadChecks(h Hook, r v1alpha1.CallRecord, at time.Time) []analysis.Check {
	th := h.Thresholds
	name := "hook:" + h.Name
	if r.Load == nil {
		return []analysis.Check{{Metric: name + "/load", Query: string(h.Type) + " " + h.URL, Threshold: "a load result", Outcome: analysis.Error,
			Message: "the hook answered 2xx without load figures (want JSON with requests, success, p95Ms...)", At: at}}
	}
	l := r.Load
	samples := int64(l.Requests)
	var out []analysis.Check
	bound := func(metric string, v float64, min, max *float64) {
		c := analysis.Check{Metric: name + "/" + metric, Query: "load test " + h.URL, Value: &v, Samples: samples, At: at, Outcome: analysis.Pass}
		switch {
		case min != nil:
			c.Threshold = fmt.Sprintf(">= %g", *min)
			if v < *min {
				c.Outcome = analysis.Fail
			}
		case max != nil:
			c.Threshold = fmt.Sprintf("<= %g", *max)
			if v > *max {
				c.Outcome = analysis.Fail
			}
		}
		if th.MinRequests > 0 && l.Requests < th.MinRequests {
			c.Outcome = analysis.NotEnoughData
			c.Message = fmt.Sprintf("%d requests, want at least %d", l.Requests, th.MinRequests)
		}
		out = append(out, c)
	}
	if th.MinSuccess != nil {
		bound("success", l.Success, th.MinSuccess, nil)
	}
	if th.MaxP95Ms != nil {
		bound("p95-ms", l.P95Ms, nil, th.MaxP95Ms)
	}
	if th.MaxP99Ms != nil {
		bound("p99-ms", l.P99Ms, nil, th.MaxP99Ms)
	}
	if len(out) == 0 && th.MinRequests > 0 {
		bound("requests", float64(l.Requests), ptrTo(float64(th.MinRequests)), nil)
	}
	return out
}

func ptrTo[T any](v T) *T { return &v }

// gatePassed reports whether h opened for the current step of this
// revision already: a gate that opened is never asked again.
func (d *decider) gatePassed(h Hook, step int32) bool {
	for _, c := range d.st.Calls {
		if c.Hook == h.Name && c.Type == h.Type && c.Step == step && c.State == v1alpha1.CallOK {
			return true
		}
	}
	return false
}

// gate asks the hooks of gate type t for the current step. It reports
// whether all are open; while one is closed the Flight holds (its checks
// keep running) and the gate is asked again every poll interval. decided
// means a gate's deadline rolled the canary back.
func (d *decider) gate(t webhooks.Type) (open, decided bool) {
	hooks := d.in.Policy.hooksOf(t)
	step := d.st.Step
	var closed []string
	var due []Hook // closed, and their poll interval is over
	pending, refused := false, false
	wait := time.Duration(0)
	for _, h := range hooks {
		if d.gatePassed(h, step) {
			continue
		}
		rec, done := d.hookResult(h, step, d.st.GateRound)
		switch {
		case !done:
			pending = true
			closed = append(closed, h.Name+" (asking)")
		case rec.State == v1alpha1.CallOK:
		default:
			refused = true
			closed = append(closed, fmt.Sprintf("%s: %s", h.Name, rec.Message))
			next := rec.Done.Add(h.PollInterval)
			if !d.in.Now.Before(next) {
				due = append(due, h)
			} else if w := next.Sub(d.in.Now); wait == 0 || w < wait {
				wait = w
			}
		}
	}
	if len(closed) == 0 {
		if d.st.Hold != nil && d.st.Hold.Reason == v1alpha1.HoldGate {
			d.st.Hold = nil
		}
		return true, false
	}
	msg := fmt.Sprintf("%s: waiting for the %s gate: %s", d.where(), t, strings.Join(closed, "; "))
	if !refused && (d.st.Hold == nil || d.st.Hold.Reason != v1alpha1.HoldGate) {
		// Only asking so far: not a hold until a gate says no.
		d.st.Message = msg
		return false, false
	}
	d.hold(v1alpha1.HoldGate, msg)
	since := d.st.Hold.Since.Time
	for _, h := range hooks {
		if d.gatePassed(h, step) || d.in.Now.Sub(since) < h.Deadline {
			continue
		}
		if h.RollbackOnDeadline {
			d.rollback(v1alpha1.VerdictRollback, fmt.Sprintf("%s: the %s gate %s did not open within %s", d.where(), t, h.Name, h.Deadline), nil)
			return false, true
		}
		msg += "; its deadline passed (" + h.Deadline.String() + "): holding until it opens or someone acts"
	}
	d.st.Hold.Message = msg
	d.st.Message = msg
	if len(due) > 0 && !pending {
		// Ask the closed gates again, under new ids; the answers come
		// back through the runner.
		d.st.GateRound++
		for _, h := range due {
			d.hookResult(h, step, d.st.GateRound)
		}
		return false, false
	}
	if wait > 0 {
		d.after(wait)
	}
	return false, false
}

// where says where the rollout stands, for messages.
func (d *decider) where() string {
	if d.st.Step < 0 {
		return "before traffic"
	}
	if c := CohortOf(&d.st); c != nil {
		if d.previewing() {
			return "preview (" + describeCohort(c) + ")"
		}
		if c.Mirror > 0 {
			return fmt.Sprintf("step %d/%d (mirror %d%%)", d.st.Step+1, len(d.st.Steps), c.Mirror)
		}
		return fmt.Sprintf("step %d/%d (cohort %s)", d.st.Step+1, len(d.st.Steps), c.Name)
	}
	if d.switched() {
		return "after the switch"
	}
	// "step %d/%d at %d%%", written out: it heads every look's message.
	return "step " + strconv.Itoa(int(d.st.Step+1)) + "/" + strconv.Itoa(len(d.st.Steps)) + " at " + strconv.Itoa(int(d.st.CanaryWeight)) + "%"
}

// payload builds the body of a call to h.
func (d *decider) payload(h Hook, event, msg string) webhooks.Payload {
	p := webhooks.Payload{
		Type: h.Type, Hook: h.Name, Name: d.in.Name, Namespace: d.in.Namespace,
		Revision: webhooks.Revision{Hash: d.st.CanaryRevision, Images: ImageRefs(d.st.CanaryImages), From: ImageRefs(d.st.StableImages)},
		Phase:    string(d.st.Phase), Step: d.st.Step, Steps: int32(len(d.st.Steps)), CanaryWeight: d.st.CanaryWeight,
		Event: event, Message: msg, Checks: d.latestChecks(), Metadata: h.Metadata,
	}
	return p
}

// latestChecks are the checks of the last decision that ran any.
func (d *decider) latestChecks() []analysis.Check {
	for i := len(d.st.Decisions) - 1; i >= 0; i-- {
		if r := d.st.Decisions[i]; len(r.Checks) > 0 && r.Revision == d.st.CanaryRevision {
			return copyChecks(r.Checks)
		}
	}
	return nil
}

// rollbackAsked returns the message of a rollback hook that answered 2xx.
func rollbackAsked(recs []v1alpha1.CallRecord) (string, bool) {
	for _, r := range recs {
		if r.Type == webhooks.Rollback && r.State == v1alpha1.CallOK {
			return fmt.Sprintf("rollback hook %s asked for a rollback", r.Hook), true
		}
	}
	return "", false
}

func hookNames(hooks []Hook) string {
	names := make([]string, len(hooks))
	for i, h := range hooks {
		names[i] = h.Name
	}
	return strings.Join(names, ", ")
}

// hooksStarted reports whether any of hooks was called for (step, round).
func (d *decider) hooksStarted(hooks []Hook, step, round int32) bool {
	for _, h := range hooks {
		id := d.hookCallID(&h, step, round)
		for i := range d.st.Calls {
			if d.st.Calls[i].ID == id {
				return true
			}
		}
	}
	return false
}
