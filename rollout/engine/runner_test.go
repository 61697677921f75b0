package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/fledgehq/fledge/rollout"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
)

func TestRunnerCallsOncePerID(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var calls atomic.Int32
		release := make(chan struct{})
		woken := make(chan string, 10)
		r := &Runner{
			Call: func(ctx context.Context, a rollout.CallHook) rollout.CallResult {
				calls.Add(1)
				<-release
				return rollout.CallResult{State: v1alpha1.CallOK, Status: 200, Message: "200 OK"}
			},
			Wake: func(key string) { woken <- key },
		}
		defer r.Stop()
		a := rollout.CallHook{ID: "id-1", Hook: rollout.Hook{Name: "gate"}}
		r.StartCall("ns/web", a)
		r.StartCall("ns/web", a) // running: ignored
		synctest.Wait()
		st := &v1alpha1.FlightStatus{Calls: []v1alpha1.CallRecord{{ID: "id-1", State: v1alpha1.CallPending}}}
		if got, _ := r.Outcomes(st); len(got) != 0 {
			t.Fatalf("outcome before the call answered: %v", got)
		}
		close(release)
		synctest.Wait()
		if key := <-woken; key != "ns/web" {
			t.Errorf("woke %q, want ns/web", key)
		}
		r.StartCall("ns/web", a) // answered: ignored until claimed
		synctest.Wait()
		if n := calls.Load(); n != 1 {
			t.Errorf("%d calls for one id, want 1", n)
		}
		got, _ := r.Outcomes(st)
		if got["id-1"].State != v1alpha1.CallOK {
			t.Errorf("outcome %+v, want OK", got["id-1"])
		}
		st.Calls[0].State = v1alpha1.CallOK // recorded: no longer offered
		if got, _ := r.Outcomes(st); len(got) != 0 {
			t.Errorf("outcome offered for a recorded call: %v", got)
		}
	})
}

func TestRunnerDeliveries(t *testing.T) {
	tests := []struct {
		name      string
		failures  int  // attempts failing before success
		retryable bool // whether they may be retried
		want      rollout.DeliveryResult
	}{
		{"delivers at the first attempt", 0, true, rollout.DeliveryResult{Delivered: true, Attempts: 1}},
		{"retries a retryable failure with backoff until it is delivered", 4, true, rollout.DeliveryResult{Delivered: true, Attempts: 5}},
		{"gives up at once on a failure that cannot be retried", 1, false, rollout.DeliveryResult{Attempts: 1, Message: "slack: 404 channel_not_found"}},
		// Attempts at 0, 1, 3, 7, 15, 31, 61, 91 ... 271 s; the next would be past 5 min.
		{"gives up once the delivery is older than MaxAge", 1000, true, rollout.DeliveryResult{Attempts: 14, Message: "slack: 404 channel_not_found"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var attempts atomic.Int32
				var mu sync.Mutex
				var gaps []time.Duration
				last := time.Now()
				r := &Runner{
					Deliver: func(ctx context.Context, a rollout.Deliver) (bool, error) {
						mu.Lock()
						gaps = append(gaps, time.Since(last))
						last = time.Now()
						mu.Unlock()
						if int(attempts.Add(1)) <= tt.failures {
							return tt.retryable, errors.New("slack: 404 channel_not_found")
						}
						return false, nil
					},
					Wake:         func(string) {},
					BackoffFirst: time.Second, BackoffMax: 30 * time.Second, MaxAge: 5 * time.Minute,
					Metrics: NewMetrics(nil), Log: slog.New(slog.DiscardHandler),
				}
				defer r.Stop()
				d := v1alpha1.Delivery{ID: "d-1", Channel: "slack", Created: metav1.NewTime(time.Now()), State: v1alpha1.DeliveryPending}
				r.StartDelivery("ns/web", rollout.Deliver{Delivery: d})
				time.Sleep(time.Hour)
				synctest.Wait()
				_, got := r.Outcomes(&v1alpha1.FlightStatus{Outbox: []v1alpha1.Delivery{d}})
				res := got["d-1"]
				res.At = time.Time{}
				if res != tt.want {
					t.Errorf("outcome %+v, want %+v", res, tt.want)
				}
				counted := map[string]int{}
				for _, result := range []string{"delivered", "retry", "failed"} {
					counted[result] = int(testutil.ToFloat64(r.Metrics.deliveries.WithLabelValues("slack", result)))
				}
				final := "failed"
				if tt.want.Delivered {
					final = "delivered"
				}
				if counted[final] != 1 || counted["retry"] != tt.want.Attempts-1 {
					t.Errorf("metrics counted %v for %d attempts ending %s", counted, tt.want.Attempts, final)
				}
				// Backoff doubles from 1s and is capped at 30s.
				want := []time.Duration{0, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 30 * time.Second}
				for i := 1; i < len(gaps) && i < len(want); i++ {
					if gaps[i] != want[i] {
						t.Errorf("wait before attempt %d: %s, want %s", i+1, gaps[i], want[i])
					}
				}
			})
		})
	}
}

func TestRunnerStopAbandonsWithoutRecording(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := &Runner{
			Call: func(ctx context.Context, a rollout.CallHook) rollout.CallResult {
				<-ctx.Done()
				return rollout.CallResult{State: v1alpha1.CallError, Message: "canceled"}
			},
			Wake: func(string) { t.Error("woke after Stop") },
		}
		r.StartCall("ns/web", rollout.CallHook{ID: "id-1"})
		synctest.Wait()
		r.Stop()
		got, _ := r.Outcomes(&v1alpha1.FlightStatus{Calls: []v1alpha1.CallRecord{{ID: "id-1", State: v1alpha1.CallPending}}})
		if len(got) != 0 {
			t.Errorf("a call cut short by Stop was recorded: %v", got)
		}
	})
}

func TestRunnerTurnsAPanickingJobIntoAFailedOutcome(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var logs lockedLog
		woken := make(chan string, 10)
		r := &Runner{
			Call: func(ctx context.Context, a rollout.CallHook) rollout.CallResult {
				if a.ID == "boom" {
					var hook *rollout.Hook
					_ = hook.Name // a nil dereference, as a bug in a client would
				}
				return rollout.CallResult{State: v1alpha1.CallOK, Status: 200, Message: "200 OK"}
			},
			Deliver: func(ctx context.Context, a rollout.Deliver) (bool, error) {
				if a.Delivery.ID == "d-boom" {
					panic("slack: unexpected answer")
				}
				return false, nil
			},
			Wake:    func(key string) { woken <- key },
			Log:     slog.New(slog.NewTextHandler(&logs, nil)),
			Metrics: NewMetrics(nil),
		}
		defer r.Stop()
		r.StartCall("ns/web", rollout.CallHook{ID: "boom", Hook: rollout.Hook{Name: "gate"}})
		r.StartCall("ns/web", rollout.CallHook{ID: "ok", Hook: rollout.Hook{Name: "gate"}})
		boom := v1alpha1.Delivery{ID: "d-boom", Channel: "slack", Created: metav1.NewTime(time.Now()), State: v1alpha1.DeliveryPending}
		fine := v1alpha1.Delivery{ID: "d-ok", Channel: "slack", Created: metav1.NewTime(time.Now()), State: v1alpha1.DeliveryPending}
		r.StartDelivery("ns/web", rollout.Deliver{Delivery: boom})
		r.StartDelivery("ns/web", rollout.Deliver{Delivery: fine})
		synctest.Wait()
		if len(woken) != 4 {
			t.Errorf("woke the controller %d times for 4 outcomes", len(woken))
		}
		if n := r.Running(); n != 0 {
			t.Errorf("%d jobs still running after they all ended", n)
		}

		st := &v1alpha1.FlightStatus{
			Calls:  []v1alpha1.CallRecord{{ID: "boom", State: v1alpha1.CallPending}, {ID: "ok", State: v1alpha1.CallPending}},
			Outbox: []v1alpha1.Delivery{boom, fine},
		}
		calls, delivered := r.Outcomes(st)
		if got := calls["boom"]; got.State != v1alpha1.CallError || !strings.Contains(got.Message, "panic") || !strings.Contains(got.Message, "nil pointer") {
			t.Errorf("outcome of a call that panicked: %+v; want Error saying it panicked, and why", got)
		}
		if got := calls["ok"]; got.State != v1alpha1.CallOK {
			t.Errorf("outcome of the other call: %+v, want OK", got)
		}
		if got := delivered["d-boom"]; got.Delivered || got.Attempts != 1 || !strings.Contains(got.Message, "panic") || !strings.Contains(got.Message, "slack: unexpected answer") {
			t.Errorf("outcome of a delivery that panicked: %+v; want given up after 1 attempt, saying it panicked, and why", got)
		}
		if got := delivered["d-ok"]; !got.Delivered {
			t.Errorf("outcome of the other delivery: %+v, want delivered", got)
		}
		if n := testutil.ToFloat64(r.Metrics.deliveries.WithLabelValues("slack", "failed")); n != 1 {
			t.Errorf("metrics counted %v failed deliveries, want 1", n)
		}

		log := logs.String()
		for _, want := range []string{`msg="hook call panicked" flight=ns/web hook=gate`, `msg="delivery panicked" flight=ns/web channel=slack`, "runner_test.go"} {
			if !strings.Contains(log, want) {
				t.Errorf("the log does not say %q:\n%s", want, log)
			}
		}
	})
}

// lockedLog is a log destination that goroutines share.
type lockedLog struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// TestInformerHandlerPanicsAreContained checks the wrapper NewController
// puts around its informers' handlers: client-go would let a panic end
// the process.
func TestInformerHandlerPanicsAreContained(t *testing.T) {
	var logs lockedLog
	c := &Controller{log: slog.New(slog.NewTextHandler(&logs, nil))}
	var seen []string
	h := c.recovering("flights", cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { panic("add bug") },
		UpdateFunc: func(_, cur any) { seen = append(seen, cur.(*v1alpha1.Flight).Name) },
		DeleteFunc: func(obj any) { panic("delete bug") },
	})
	f := &v1alpha1.Flight{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web"}}
	h.OnAdd(f, false)
	h.OnDelete(cache.DeletedFinalStateUnknown{Key: "ns/gone", Obj: f})
	h.OnUpdate(f, f)
	if len(seen) != 1 || seen[0] != "web" {
		t.Errorf("the handler after two panics saw %v, want [web]", seen)
	}
	log := logs.String()
	for _, want := range []string{
		`msg="informer event handler panicked" informer=flights event=add object=ns/web panic="add bug"`,
		`event=delete object=ns/gone panic="delete bug"`,
		"runner_test.go", // the stack
	} {
		if !strings.Contains(log, want) {
			t.Errorf("the log does not say %q:\n%s", want, log)
		}
	}
}

// A failed look is retried after its own Flight's backoff only: hundreds
// failing at once (an API server restarting) are all retried within
// milliseconds, not 10 a second in a line; one failing again and again is
// retried at least every minute.
func TestFailedLooksAreRetriedPerFlight(t *testing.T) {
	rl := retries()
	for i := range 500 {
		if d := rl.When(fmt.Sprintf("ns/f%d", i)); d > retryBase {
			t.Fatalf("the first retry of the %dth Flight failing at once waits %s, want %s", i+1, d, retryBase)
		}
	}
	var d time.Duration
	for range 40 {
		d = rl.When("ns/f0")
	}
	if d != retryMax {
		t.Errorf("after 40 failures a Flight waits %s, want %s", d, retryMax)
	}
	rl.Forget("ns/f0")
	if d := rl.When("ns/f0"); d != retryBase {
		t.Errorf("after a look that did not fail, the next retry waits %s, want %s", d, retryBase)
	}
}
