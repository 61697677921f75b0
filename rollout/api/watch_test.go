package api_test

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/fledgehq/fledge/rollout/api"
	"github.com/fledgehq/fledge/rollout/api/apitest"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	"github.com/fledgehq/fledge/rollout/rolloutpb"
)

// event is a WatchEvent in short: "ADDED shop@3", "SYNCED@5".
func event(ev *rolloutpb.WatchEvent) string {
	typ := strings.TrimPrefix(ev.GetType().String(), "TYPE_")
	if ev.GetFlight() == nil {
		return typ + "@" + ev.GetResourceVersion()
	}
	return fmt.Sprintf("%s %s/%s@%s", typ, ev.GetFlight().GetName(), ev.GetFlight().GetResourceVersion(), ev.GetResourceVersion())
}

func recv(t *testing.T, stream grpc.ServerStreamingClient[rolloutpb.WatchEvent], n int) []string {
	t.Helper()
	var out []string
	for range n {
		ev, err := stream.Recv()
		if err != nil {
			t.Fatalf("after %v: %v", out, err)
		}
		out = append(out, event(ev))
	}
	return out
}

func wantEvents(t *testing.T, got []string, want ...string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("events:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func TestWatchSendsTheStateThenSyncedThenChanges(t *testing.T) {
	// The fixture's versions: prod/shop 1, prod/cart 2, staging/shop 3.
	f := newFixture(t, apitest.Options{})
	stream, err := f.client.Watch(f.ctx, &rolloutpb.WatchRequest{Namespace: "prod"})
	if err != nil {
		t.Fatal(err)
	}
	// In version order: each event's resume point covers what came before.
	wantEvents(t, recv(t, stream, 3), "ADDED shop/1@1", "ADDED cart/2@2", "SYNCED@2")

	f.backend.Update("prod", "shop", func(st *v1alpha1.FlightStatus) { st.CanaryWeight = 70 })
	f.backend.Update("staging", "shop", func(st *v1alpha1.FlightStatus) {}) // another namespace
	f.backend.Put(apitest.NewFlight("prod", "web", v1alpha1.FlightStatus{}), nil)
	f.backend.Delete("prod", "cart")
	wantEvents(t, recv(t, stream, 3), "MODIFIED shop/4@4", "ADDED web/6@6", "DELETED cart/7@7")
}

func TestWatchOneFlight(t *testing.T) {
	f := newFixture(t, apitest.Options{})
	stream, err := f.client.Watch(f.ctx, &rolloutpb.WatchRequest{Namespace: "prod", Name: "web"})
	if err != nil {
		t.Fatal(err)
	}
	// No Flight yet: not an error, it comes when the Deployment opts in.
	wantEvents(t, recv(t, stream, 1), "SYNCED@")
	f.backend.Put(apitest.NewFlight("prod", "shop", progressing()), nil) // another name
	f.backend.Put(apitest.NewFlight("prod", "web", v1alpha1.FlightStatus{}), nil)
	f.backend.Update("prod", "web", func(st *v1alpha1.FlightStatus) { st.Phase = v1alpha1.PhaseIdle })
	wantEvents(t, recv(t, stream, 2), "ADDED web/5@5", "MODIFIED web/6@6")
}

func TestWatchByLabel(t *testing.T) {
	f := newFixture(t, apitest.Options{})
	stream, err := f.client.Watch(f.ctx, &rolloutpb.WatchRequest{Namespace: "prod", LabelSelector: "team=cart"})
	if err != nil {
		t.Fatal(err)
	}
	wantEvents(t, recv(t, stream, 2), "ADDED cart/2@2", "SYNCED@2")
	f.backend.Update("prod", "shop", func(st *v1alpha1.FlightStatus) {})
	f.backend.Update("prod", "cart", func(st *v1alpha1.FlightStatus) {})
	wantEvents(t, recv(t, stream, 1), "MODIFIED cart/5@5")

	_, err = f.client.Watch(f.ctx, &rolloutpb.WatchRequest{Namespace: "prod", Name: "shop", LabelSelector: "team=cart"})
	if err == nil {
		stream, _ := f.client.Watch(f.ctx, &rolloutpb.WatchRequest{Namespace: "prod", Name: "shop", LabelSelector: "team=cart"})
		_, err = stream.Recv()
	}
	wantStatus(t, err, codes.InvalidArgument, "label_selector")
}

func TestWatchResumes(t *testing.T) {
	tests := []struct {
		name string
		req  *rolloutpb.WatchRequest
		// After the fixture, prod/shop is changed to version 4.
		want []string
	}{
		{
			name: "skips a flight not changed since the version, and sends no SYNCED",
			req:  &rolloutpb.WatchRequest{Namespace: "prod", Name: "shop", ResourceVersion: "4"},
			want: []string{"MODIFIED shop/5@5"},
		},
		{
			name: "sends a flight changed since the version",
			req:  &rolloutpb.WatchRequest{Namespace: "prod", Name: "shop", ResourceVersion: "1"},
			want: []string{"ADDED shop/4@4", "MODIFIED shop/5@5"},
		},
		{
			name: "sends only the flights of a namespace changed since the version",
			req:  &rolloutpb.WatchRequest{Namespace: "prod", ResourceVersion: "2"},
			want: []string{"ADDED shop/4@4", "MODIFIED shop/5@5"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clk := clocktesting.NewFakeClock(time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC))
			f := newFixture(t, apitest.Options{Service: api.ServiceOptions{Clock: clk}})
			f.backend.Update("prod", "shop", func(st *v1alpha1.FlightStatus) { st.CanaryWeight = 70 })
			stream, err := f.client.Watch(f.ctx, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			waitStarted(t, clk)
			f.backend.Update("prod", "shop", func(st *v1alpha1.FlightStatus) { st.CanaryWeight = 100 })
			wantEvents(t, recv(t, stream, len(tc.want)), tc.want...)
		})
	}
}

// waitStarted waits until a watch has read the initial state, which it
// does before it starts its bookmark ticker. It polls without a deadline:
// the test's own timeout bounds it.
func waitStarted(t *testing.T, clk *clocktesting.FakeClock) {
	t.Helper()
	for !clk.HasWaiters() {
		time.Sleep(time.Millisecond)
	}
}

func TestWatchBookmarks(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC))
	f := newFixture(t, apitest.Options{Service: api.ServiceOptions{Clock: clk, BookmarkInterval: 30 * time.Second}})
	stream, err := f.client.Watch(f.ctx, &rolloutpb.WatchRequest{Namespace: "prod", Name: "shop"})
	if err != nil {
		t.Fatal(err)
	}
	wantEvents(t, recv(t, stream, 2), "ADDED shop/1@1", "SYNCED@1")
	clk.Step(30 * time.Second)
	f.backend.Update("prod", "cart", func(st *v1alpha1.FlightStatus) {}) // not watched
	wantEvents(t, recv(t, stream, 1), "BOOKMARK@1")
	f.backend.Update("prod", "shop", func(st *v1alpha1.FlightStatus) {})
	// A tick while an event waits to be sent sends no bookmark (the event
	// serves as one): take the event first, then tick.
	wantEvents(t, recv(t, stream, 1), "MODIFIED shop/5@5")
	clk.Step(30 * time.Second)
	wantEvents(t, recv(t, stream, 1), "BOOKMARK@5")
}

func TestASlowWatcherIsCutOffWithoutHoldingUpAFastOne(t *testing.T) {
	f := newFixture(t, apitest.Options{
		Backend: apitest.NewBackend(1 << 14), // the service's queue is what fills
		Service: api.ServiceOptions{WatchQueue: 4},
	})
	// The slow client has its own connection, with a fixed flow-control
	// window (no dynamic growth), and stops reading after SYNCED.
	slowConn := f.srv.Dial(t, grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	ctx, cancel := context.WithCancel(f.ctx)
	defer cancel()
	slow, err := rolloutpb.NewRolloutsClient(slowConn).Watch(ctx, &rolloutpb.WatchRequest{Namespace: "prod"})
	if err != nil {
		t.Fatal(err)
	}
	wantEvents(t, recv(t, slow, 3), "ADDED shop/1@1", "ADDED cart/2@2", "SYNCED@2")
	fast, err := f.client.Watch(ctx, &rolloutpb.WatchRequest{Namespace: "prod"})
	if err != nil {
		t.Fatal(err)
	}
	recv(t, fast, 3)

	// 8 KiB per event: the slow client's window holds a few, the
	// service's queue 4 more, and then it is cut off.
	big := strings.Repeat("x", 8<<10)
	changes := 0
	for ; changes < 2000 && f.backend.Broadcaster().Subscribers() == 2; changes++ {
		fl := f.backend.Update("prod", "shop", func(st *v1alpha1.FlightStatus) { st.Message = big })
		ev, err := fast.Recv()
		if err != nil {
			t.Fatalf("the fast watcher, after %d changes: %v", changes, err)
		}
		if ev.GetFlight().GetResourceVersion() != fl.ResourceVersion {
			t.Fatalf("the fast watcher got %s, want version %s", event(ev), fl.ResourceVersion)
		}
	}
	if f.backend.Broadcaster().Subscribers() != 1 {
		t.Fatalf("after %d changes of 8 KiB, the slow watcher is still subscribed", changes)
	}
	// The fast watcher goes on.
	fl := f.backend.Update("prod", "cart", func(st *v1alpha1.FlightStatus) {})
	if ev, err := fast.Recv(); err != nil || ev.GetFlight().GetResourceVersion() != fl.ResourceVersion {
		t.Fatalf("the fast watcher after the cut: %v, %v", ev, err)
	}

	// The slow watcher reads what was sent before the cut, then learns
	// where to resume from: never past the last event it got (that would
	// lose events), at most one send behind it (the sender records a
	// send after it returns, so the last may come twice).
	last := 2 // SYNCED's
	for {
		ev, err := slow.Recv()
		if err != nil {
			wantStatus(t, err, codes.ResourceExhausted, "watch fell behind", "resume with resource_version")
			m := regexp.MustCompile(`resource_version "(\d+)"`).FindStringSubmatch(err.Error())
			if m == nil {
				t.Fatalf("no resume point in %v", err)
			}
			if resume, _ := strconv.Atoi(m[1]); resume > last || resume < last-1 {
				t.Errorf("resume point %d after receiving up to %d: want %d, or %d at worst", resume, last, last, last-1)
			}
			break
		}
		last, _ = strconv.Atoi(ev.GetResourceVersion())
	}
}

func TestWatchEndsWhenTheBackendDropsIt(t *testing.T) {
	f := newFixture(t, apitest.Options{})
	stream, err := f.client.Watch(f.ctx, &rolloutpb.WatchRequest{Namespace: "prod", Name: "shop"})
	if err != nil {
		t.Fatal(err)
	}
	recv(t, stream, 2)
	f.backend.Broadcaster().DropAll()
	_, err = stream.Recv()
	wantStatus(t, err, codes.ResourceExhausted, `resume with resource_version "1"`)
}
