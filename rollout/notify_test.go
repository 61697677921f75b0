package rollout

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fledgehq/fledge/analysis"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	"github.com/fledgehq/fledge/webhooks"
)

// secretInStatus fails the test if any string of the status, as the API
// server stores it, contains secret.
func secretInStatus(t *testing.T, what string, st v1alpha1.FlightStatus, secret string) {
	t.Helper()
	raw, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), secret) {
		t.Errorf("%s: the status holds the hook's metadata %q, readable by anyone who can get Flights:\n%s", what, secret, raw)
	}
}

// hookDeliveries returns the Deliver actions of a decision for a hook's
// channel.
func hookDeliveries(d Decision, channel string) []Deliver {
	var out []Deliver
	for _, a := range d.Actions {
		if del, ok := a.(Deliver); ok && del.Delivery.Channel == channel {
			out = append(out, del)
		}
	}
	return out
}

// A hook's metadata is the admin's, written in the policy, and may hold a
// secret (a token for the load tester). The Flight's status, readable by
// anyone who can get Flights, keeps a hook delivery without it
// (status.outbox[].payload.metadata is empty); the delivery sent carries
// it, taken from the policy in force when it is sent.
func TestHookMetadataIsSentButNeverStoredInTheStatus(t *testing.T) {
	now := epoch.Add(time.Hour)
	in := atStep(now, 0)
	in.Policy.WebhookSecret = &SecretRef{Name: "hooks", Key: "hmac"}
	in.Policy.Hooks = []Hook{{Name: "audit", Type: webhooks.Event, URL: "http://hooks.test/audit", Timeout: 10 * time.Second,
		Metadata: map[string]string{"token": "s3cret", "team": "shop"}}}
	in.Checks = []analysis.Check{check("success-rate", analysis.Pass, 1)}
	d := Decide(in)
	if d.Status.CanaryWeight != 50 {
		t.Fatalf("weight %d (%s): want the step passed, told to the event hook", d.Status.CanaryWeight, d.Status.Message)
	}
	secretInStatus(t, "the decision that queued the delivery", d.Status, "s3cret")
	var entry *v1alpha1.Delivery
	for i, e := range d.Status.Outbox {
		if e.Channel == "hook:audit" {
			entry = &d.Status.Outbox[i]
		}
	}
	if entry == nil || entry.Payload == nil {
		t.Fatalf("outbox %+v: want a delivery to hook:audit", d.Status.Outbox)
	}
	if entry.Payload.Metadata != nil {
		t.Errorf("status.outbox[].payload.metadata = %v, want none", entry.Payload.Metadata)
	}
	sent := hookDeliveries(d, "hook:audit")
	if len(sent) != 1 || sent[0].Delivery.Payload == nil {
		t.Fatalf("deliveries %+v: want one to hook:audit", sent)
	}
	want := map[string]string{"token": "s3cret", "team": "shop"}
	if diff := cmp.Diff(want, sent[0].Delivery.Payload.Metadata); diff != "" {
		t.Errorf("the Deliver action's payload metadata (-want +got):\n%s", diff)
	}
	if p := sent[0].Delivery.Payload; p.DeliveryID != entry.ID || p.Hook != "audit" || p.Type != webhooks.Event || p.Event != string(v1alpha1.VerdictAdvance) {
		t.Errorf("the Deliver action's payload %+v: want the queued delivery %s", p, entry.ID)
	}

	// Not delivered yet, asked again: the metadata is the policy's as it
	// is now (a rotated token), and still not in the status.
	in.Status, in.Now, in.Checks = d.Status, now.Add(time.Second), nil
	in.Policy.Hooks[0].Metadata = map[string]string{"token": "r0tated"}
	before := in.Status.DeepCopy()
	d = Decide(in)
	if diff := cmp.Diff(before, &in.Status); diff != "" {
		t.Fatalf("Decide changed its input status (-before +after):\n%s", diff)
	}
	secretInStatus(t, "a later decision", d.Status, "r0tated")
	sent = hookDeliveries(d, "hook:audit")
	if len(sent) != 1 || sent[0].Delivery.Payload.Metadata["token"] != "r0tated" {
		t.Fatalf("deliveries %+v: want the pending one again, with the policy's current metadata", sent)
	}

	// The hook is gone from the policy: the delivery fails, saying so.
	in.Policy.Hooks = nil
	d = Decide(in)
	if sent := hookDeliveries(d, "hook:audit"); len(sent) != 0 {
		t.Errorf("deliveries %+v to a hook the policy no longer has", sent)
	}
	for _, e := range d.Status.Outbox {
		if e.Channel == "hook:audit" && (e.State != v1alpha1.DeliveryFailed || e.Message != "the policy no longer configures hook:audit") {
			t.Errorf("delivery %s: state %s, message %q: want failed, saying the policy no longer configures the hook", e.ID, e.State, e.Message)
		}
	}
}

// A status written by an older fledge may hold metadata in its outbox:
// the next decision drops it from every entry, pending or done, without
// changing its input.
func TestHookMetadataAnOlderStatusHoldsIsDropped(t *testing.T) {
	now := epoch.Add(time.Hour)
	in := atStep(now, 0)
	in.Policy.WebhookSecret = &SecretRef{Name: "hooks", Key: "hmac"}
	in.Policy.Hooks = []Hook{{Name: "audit", Type: webhooks.Event, URL: "http://hooks.test/audit", Timeout: 10 * time.Second,
		Metadata: map[string]string{"token": "s3cret"}}}
	done := metav1.NewTime(now.Add(-time.Minute))
	old := func(id string, state v1alpha1.DeliveryState) v1alpha1.Delivery {
		return v1alpha1.Delivery{ID: id, Channel: "hook:audit", Event: "Advance", State: state, Created: done,
			Payload: &webhooks.Payload{DeliveryID: id, Type: webhooks.Event, Hook: "audit", Metadata: map[string]string{"token": "s3cret"}}}
	}
	delivered := old("d-1", v1alpha1.DeliveryDelivered)
	delivered.Done = &done
	in.Status.Outbox = []v1alpha1.Delivery{delivered, old("d-2", v1alpha1.DeliveryPending)}
	in.Checks = []analysis.Check{check("success-rate", analysis.Pass, 1)}
	before := in.Status.DeepCopy()
	d := Decide(in)
	if diff := cmp.Diff(before, &in.Status); diff != "" {
		t.Fatalf("Decide changed its input status (-before +after):\n%s", diff)
	}
	secretInStatus(t, "an older status", d.Status, "s3cret")
	sent := hookDeliveries(d, "hook:audit")
	if len(sent) != 1 || sent[0].Delivery.ID != "d-2" || sent[0].Delivery.Payload.Metadata["token"] != "s3cret" {
		t.Errorf("deliveries %+v: want d-2 sent with the policy's metadata", sent)
	}
}

// A call's record (status.calls[]) holds no payload; the call carries the
// metadata.
func TestHookCallsCarryTheMetadataAndTheirRecordsDoNot(t *testing.T) {
	now := epoch.Add(time.Hour)
	in := atStep(now, 0)
	in.Policy.WebhookSecret = &SecretRef{Name: "hooks", Key: "hmac"}
	in.Policy.Hooks = []Hook{{Name: "load", Type: webhooks.Rollout, URL: "http://hooks.test/load", Timeout: 10 * time.Second,
		Metadata: map[string]string{"token": "s3cret"}}}
	in.Checks = []analysis.Check{check("success-rate", analysis.Pass, 1)}
	d := Decide(in)
	secretInStatus(t, "a pending call", d.Status, "s3cret")
	calls := loadCalls(d)
	if len(calls) != 1 || calls[0].Payload.Metadata["token"] != "s3cret" {
		t.Fatalf("calls %+v: want the rollout hook called with its metadata", calls)
	}
}
