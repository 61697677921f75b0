package rollout

import (
	"fmt"
	"maps"
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fledgehq/fledge/analysis"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	"github.com/fledgehq/fledge/webhooks"
)

// The outbox: messages for people (Slack) and hooks told of transitions
// (event, post-rollout). A transition appends its entries to the status;
// the executor writes the status before anything is sent, and Deliver
// actions hand the oldest pending entry of each channel to a background
// sender that retries with backoff. Its final outcome comes back through
// Input.Delivered and is recorded. So a Slack outage delays messages but
// never a rollout, and each message goes out once, in order, across
// restarts.

// ChannelSlack is the outbox channel of Slack messages; a hook's is
// "hook:<name>".
const ChannelSlack = "slack"

func hookChannel(name string) string { return "hook:" + name }

// notify queues a Slack message for an event, if the policy wants it.
func (d *decider) notify(n webhooks.Notification) {
	wanted := d.in.Policy.Slack.Wants(n.Event)
	if n.Event == EventReverted {
		// A revert is a rollback too: a policy that asks for rollbacks
		// hears of it.
		wanted = wanted || d.in.Policy.Slack.Wants(EventRolledBack)
	}
	if !wanted {
		return
	}
	n.Name, n.Namespace, n.At = d.in.Name, d.in.Namespace, d.in.Now
	if n.Plan != nil {
		for _, c := range d.st.Cohorts {
			n.Cohorts = append(n.Cohorts, c.Name)
		}
	}
	if n.Revision == "" {
		n.Revision = d.st.CanaryRevision
	}
	d.enqueue(v1alpha1.Delivery{Channel: ChannelSlack, Event: n.Event, Notification: &n})
}

// tellHooks queues a payload for every hook of type t (event hooks on
// every transition, post-rollout hooks after a promotion or rollback).
//
// The payload is queued without the hook's metadata: the outbox is in the
// Flight's status, which anyone who can get Flights reads, and metadata
// is the policy author's, who may keep a secret there (a token for the
// load tester). flushOutbox attaches the metadata of the policy in force
// to the Deliver action that sends it.
func (d *decider) tellHooks(t webhooks.Type, event, msg string) {
	for _, h := range d.in.Policy.hooksOf(t) {
		p := d.payload(h, event, msg)
		p.Metadata = nil
		d.enqueue(v1alpha1.Delivery{Channel: hookChannel(h.Name), Event: event, Payload: &p})
	}
}

// withMetadata returns a copy of a queued payload with the hook's
// metadata, as it is sent. The queued payload is shared with the input
// status (see statusForDecision) and is never written.
func withMetadata(p *webhooks.Payload, metadata map[string]string) *webhooks.Payload {
	if p == nil {
		return nil
	}
	out := p.DeepCopy()
	out.Metadata = maps.Clone(metadata)
	return out
}

// dropMetadata removes hook metadata from the outbox, which a status
// written by an older fledge may hold, replacing (never writing) the
// payloads that have it.
func (d *decider) dropMetadata() {
	for i := range d.st.Outbox {
		if p := d.st.Outbox[i].Payload; p != nil && p.Metadata != nil {
			d.st.Outbox[i].Payload = withMetadata(p, nil)
		}
	}
}

func (d *decider) enqueue(e v1alpha1.Delivery) {
	d.st.DeliverySeq++
	e.ID = d.callID("outbox", d.st.DeliverySeq)
	if e.Payload != nil {
		e.Payload.DeliveryID = e.ID
	}
	e.State = v1alpha1.DeliveryPending
	e.Created = d.now()
	d.newOutbox = append(d.newOutbox, e.ID)
	d.st.Outbox = append(d.st.Outbox, e)
}

// flushOutbox records delivery outcomes, bounds the outbox, and asks for
// the oldest pending entry of each channel to be sent. One at a time per
// channel keeps messages in order.
func (d *decider) flushOutbox() {
	d.dropMetadata()
	for i := range d.st.Outbox {
		e := &d.st.Outbox[i]
		if e.State != v1alpha1.DeliveryPending {
			continue
		}
		if r, ok := d.in.Delivered[e.ID]; ok {
			at := metav1.NewTime(r.At)
			e.Done, e.Attempts, e.Message = &at, r.Attempts, r.Message
			e.State = v1alpha1.DeliveryDelivered
			if !r.Delivered {
				e.State = v1alpha1.DeliveryFailed
				d.event(true, "NotificationFailed", fmt.Sprintf("%s %s not delivered after %d attempts: %s", e.Channel, e.Event, r.Attempts, r.Message))
			}
		}
	}
	d.pruneOutbox()
	started := map[string]bool{}
	for i := range d.st.Outbox {
		e := &d.st.Outbox[i]
		if e.State != v1alpha1.DeliveryPending || started[e.Channel] {
			continue
		}
		started[e.Channel] = true
		act := Deliver{Delivery: *e}
		switch {
		case e.Channel == ChannelSlack && d.in.Policy.Slack != nil:
			act.Slack = d.in.Policy.Slack
		case e.Channel != ChannelSlack && d.hookNamed(e.Channel) != nil && d.in.Policy.WebhookSecret != nil:
			act.Hook, act.Secret = d.hookNamed(e.Channel), *d.in.Policy.WebhookSecret
			// The status keeps the payload without the metadata; the
			// delivery carries the policy's, as it is now.
			act.Delivery.Payload = withMetadata(e.Payload, act.Hook.Metadata)
		default:
			// The policy no longer names where it should go.
			now := d.now()
			e.State, e.Done, e.Message = v1alpha1.DeliveryFailed, &now, "the policy no longer configures "+e.Channel
			started[e.Channel] = false
			continue
		}
		d.do(act)
	}
}

func (d *decider) hookNamed(channel string) *Hook {
	for _, h := range d.in.Policy.Hooks {
		if hookChannel(h.Name) == channel {
			return &h
		}
	}
	return nil
}

// pruneOutbox keeps at most MaxPending pending entries (dropping the
// oldest, loudly) and the MaxDelivered most recent done ones.
func (d *decider) pruneOutbox() {
	pending, done := 0, 0
	for _, e := range d.st.Outbox {
		if e.State == v1alpha1.DeliveryPending {
			pending++
		} else {
			done++
		}
	}
	if pending <= MaxPending && done <= MaxDelivered {
		return
	}
	kept := d.st.Outbox[:0:0]
	for _, e := range d.st.Outbox {
		switch {
		case e.State == v1alpha1.DeliveryPending && pending > MaxPending:
			pending--
			d.event(true, "NotificationDropped", fmt.Sprintf("%s %s dropped: more than %d messages waiting to be delivered", e.Channel, e.Event, MaxPending))
		case e.State != v1alpha1.DeliveryPending && done > MaxDelivered:
			done--
		default:
			kept = append(kept, e)
		}
	}
	d.st.Outbox = kept
}

// Notifications for the transitions.

func (d *decider) notifyStarted() {
	d.notify(webhooks.Notification{
		Event: EventStarted, FromImages: ImageRefs(d.st.StableImages), ToImages: ImageRefs(d.st.CanaryImages),
		Plan: slices.Clone(d.st.Steps), Step: d.st.Step, Weight: d.st.CanaryWeight, Reason: d.st.Message,
	})
}

func (d *decider) notifyPromoted() {
	n := webhooks.Notification{
		Event: EventPromoted, FromImages: ImageRefs(d.st.StableImages), ToImages: ImageRefs(d.st.CanaryImages),
		Plan: slices.Clone(d.st.Steps), Step: int32(len(d.st.Steps)) - 1, Weight: 100, Reason: d.st.Message,
		Checks: d.latestChecks(),
	}
	if d.st.RevisionStartedAt != nil {
		n.DurationSeconds = int64(d.in.Now.Sub(d.st.RevisionStartedAt.Time).Seconds())
	}
	d.notify(n)
}

// notifyRejected tells of a rollback or abort, with the checks that
// failed (all of them if none did: a deadline, a gate, a hook) and where
// the rollout stood.
func (d *decider) notifyRejected(event, why, by string, step, weight int32, checks []analysis.Check) {
	var failed []analysis.Check
	for _, c := range checks {
		if c.Outcome == analysis.Fail {
			failed = append(failed, c)
		}
	}
	n := webhooks.Notification{
		Event: event, FromImages: ImageRefs(d.st.StableImages), ToImages: ImageRefs(d.st.CanaryImages),
		Plan: slices.Clone(d.st.Steps), Step: step, Weight: weight, Reason: why, By: by, Checks: copyChecks(failed),
	}
	if d.st.RevisionStartedAt != nil {
		n.DurationSeconds = int64(d.in.Now.Sub(d.st.RevisionStartedAt.Time).Seconds())
	}
	d.notify(n)
}

// notifyReverted tells of a watch's revert: the promoted revision's
// images, the previous one's it is back on, and why.
func (d *decider) notifyReverted(why string, checks []analysis.Check) {
	var failed []analysis.Check
	for _, c := range checks {
		if c.Outcome == analysis.Fail {
			failed = append(failed, c)
		}
	}
	d.notify(webhooks.Notification{
		Event: EventReverted, ToImages: ImageRefs(d.st.CanaryImages), FromImages: ImageRefs(d.st.Watch.PreviousImages),
		Step: -1, Weight: 100, Reason: why, Checks: copyChecks(failed),
	})
}

// notableHold: holds people hear about. A canary getting ready, a
// person's pause or Kubernetes finishing its own rollout are routine.
func notableHold(reason string) bool {
	switch reason {
	case v1alpha1.HoldCanaryNotReady, v1alpha1.HoldPaused, v1alpha1.HoldDeploymentRollout, v1alpha1.HoldCanaryScaling:
		return false
	}
	return true
}

func (d *decider) notifyHeld(reason, msg string) {
	d.notify(webhooks.Notification{
		Event: EventHeld, ToImages: ImageRefs(d.st.CanaryImages), FromImages: ImageRefs(d.st.StableImages),
		Step: d.st.Step, Weight: d.st.CanaryWeight, Reason: msg, HoldReason: reason,
	})
}
