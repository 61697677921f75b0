package api

import (
	"context"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
)

func flightEvent(typ, ns, name, rv string, lbls map[string]string) FlightEvent {
	return FlightEvent{Type: typ, Flight: &v1alpha1.Flight{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, ResourceVersion: rv}}, Labels: lbls}
}

// drain returns what a channel holds now, and whether it is closed.
func drain(ch <-chan FlightEvent) (rvs []string, closed bool) {
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				return rvs, true
			}
			rvs = append(rvs, ev.Flight.ResourceVersion)
		default:
			return rvs, false
		}
	}
}

func TestBroadcasterSendsEachSubscriberWhatItSelected(t *testing.T) {
	b := NewBroadcaster(10)
	ctx := t.Context()
	sub := func(ns, name, selector string) <-chan FlightEvent {
		t.Helper()
		sel := labels.Everything()
		if selector != "" {
			var err error
			if sel, err = labels.Parse(selector); err != nil {
				t.Fatal(err)
			}
		}
		ch, err := b.Subscribe(ctx, ns, name, sel)
		if err != nil {
			t.Fatal(err)
		}
		return ch
	}
	shop := sub("prod", "shop", "")
	prod := sub("prod", "", "")
	teamShop := sub("prod", "", "team=shop")
	everywhere := sub("", "", "")
	if n := b.Subscribers(); n != 4 {
		t.Fatalf("%d subscribers, want 4", n)
	}
	b.Publish(flightEvent(EventAdded, "prod", "shop", "1", map[string]string{"team": "shop"}))
	b.Publish(flightEvent(EventAdded, "prod", "cart", "2", map[string]string{"team": "cart"}))
	b.Publish(flightEvent(EventAdded, "staging", "shop", "3", nil))
	b.Publish(FlightEvent{Type: EventAdded}) // no Flight: ignored

	for _, tc := range []struct {
		name string
		ch   <-chan FlightEvent
		want []string
	}{
		{"one flight", shop, []string{"1"}},
		{"a namespace", prod, []string{"1", "2"}},
		{"a namespace by label", teamShop, []string{"1"}},
		{"every namespace", everywhere, []string{"1", "2", "3"}},
	} {
		got, closed := drain(tc.ch)
		if closed || !equal(got, tc.want) {
			t.Errorf("%s: got %v (closed %v), want %v", tc.name, got, closed, tc.want)
		}
	}
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestBroadcasterDropsASubscriberThatFellBehindAndNoOther(t *testing.T) {
	b := NewBroadcaster(2)
	slow, err := b.Subscribe(t.Context(), "prod", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	fast, err := b.Subscribe(t.Context(), "prod", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	var fastGot []string
	for _, rv := range []string{"1", "2", "3", "4"} {
		// Publish returns although slow reads nothing: were it to block,
		// this test would hang.
		b.Publish(flightEvent(EventModified, "prod", "shop", rv, nil))
		got, closed := drain(fast)
		if closed {
			t.Fatal("the fast subscriber was dropped")
		}
		fastGot = append(fastGot, got...)
	}
	if want := []string{"1", "2", "3", "4"}; !equal(fastGot, want) {
		t.Errorf("fast got %v, want %v", fastGot, want)
	}
	got, closed := drain(slow)
	if !closed || !equal(got, []string{"1", "2"}) {
		t.Errorf("slow got %v, closed %v; want its buffer [1 2], then closed", got, closed)
	}
	if b.Subscribers() != 1 || b.Dropped() != 1 {
		t.Errorf("%d subscribers, %d dropped; want 1 and 1", b.Subscribers(), b.Dropped())
	}
}

func TestBroadcasterEndsASubscriptionWithItsContext(t *testing.T) {
	b := NewBroadcaster(2)
	ctx, cancel := context.WithCancel(t.Context())
	ch, err := b.Subscribe(ctx, "prod", "shop", nil)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	// The channel closes, without anything published.
	for range ch {
		t.Error("an event came")
	}
	if n := b.Subscribers(); n != 0 {
		t.Errorf("%d subscribers left", n)
	}
	if _, err := b.Subscribe(ctx, "prod", "shop", nil); err == nil {
		t.Error("subscribed with a context that is done")
	}
	b.Publish(flightEvent(EventModified, "prod", "shop", "1", nil)) // nobody to send to, no panic
}

func TestBroadcasterDropAll(t *testing.T) {
	b := NewBroadcaster(2)
	var chans []<-chan FlightEvent
	for _, name := range []string{"shop", ""} {
		ch, err := b.Subscribe(t.Context(), "prod", name, nil)
		if err != nil {
			t.Fatal(err)
		}
		chans = append(chans, ch)
	}
	b.DropAll()
	for _, ch := range chans {
		if _, closed := drain(ch); !closed {
			t.Error("a subscription survived DropAll")
		}
	}
	if n := b.Subscribers(); n != 0 {
		t.Errorf("%d subscribers left", n)
	}
}

func TestBroadcasterConvertsOncePerEvent(t *testing.T) {
	b := NewBroadcaster(2)
	a, _ := b.Subscribe(t.Context(), "prod", "", nil)
	c, _ := b.Subscribe(t.Context(), "prod", "shop", nil)
	b.Publish(flightEvent(EventModified, "prod", "shop", "7", nil))
	ea, ec := <-a, <-c
	if pa, pc := ea.proto(), ec.proto(); pa != pc || pa.GetResourceVersion() != "7" {
		t.Errorf("the subscribers got %p and %p (%v): want one shared conversion", pa, pc, pa)
	}
}
