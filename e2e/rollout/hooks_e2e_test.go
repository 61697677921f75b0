//go:build e2e

package rollout_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/fledgehq/fledge/analysis"
	"github.com/fledgehq/fledge/e2e/sandbox"
	"github.com/fledgehq/fledge/e2e/slackd"
	"github.com/fledgehq/fledge/rollout"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	"github.com/fledgehq/fledge/webhooks"
)

// hookSecret signs every hook call in these tests; it is the key
// "hmac" of the Secret fledge-webhooks in fledge's namespace.
const hookSecret = "e2e-webhook-secret"

var hookSecrets sync.Once

// installHookSecrets creates the Secrets policies name: the signing key,
// and the sandbox's Slack receiver as an incoming webhook.
func installHookSecrets(t testing.TB, sb *sandbox.Sandbox) {
	t.Helper()
	engineBinary(t, sb) // creates fledge-system and the RBAC
	hookSecrets.Do(func() {
		for name, data := range map[string]map[string][]byte{
			"fledge-webhooks": {"hmac": []byte(hookSecret)},
			"fledge-slack":    {"webhook-url": []byte(sb.Slack.WebhookURL())},
		} {
			_, err := sb.Kube.CoreV1().Secrets(engineNamespace).Create(context.Background(), &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: engineNamespace}, Data: data,
			}, metav1.CreateOptions{})
			if err != nil && !apierrors.IsAlreadyExists(err) {
				t.Fatal(err)
			}
		}
	})
}

// hookServer is a webhook receiver that checks fledge's signature and
// records every delivery; answer decides the response.
type hookServer struct {
	*httptest.Server
	mu       sync.Mutex
	payloads []webhooks.Payload
	bad      []string // calls that failed verification
	answer   atomic.Value
}

func newHookServer(t testing.TB) *hookServer {
	h := &hookServer{}
	h.answer.Store(http.StatusOK)
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var p webhooks.Payload
		err := webhooks.Verify([]byte(hookSecret), r.Header.Get(webhooks.HeaderSignature), body, time.Now(), 5*time.Minute)
		if err == nil {
			err = json.Unmarshal(body, &p)
		}
		h.mu.Lock()
		if err != nil {
			h.bad = append(h.bad, err.Error())
		} else {
			h.payloads = append(h.payloads, p)
		}
		h.mu.Unlock()
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		code := h.answer.Load().(int)
		w.WriteHeader(code)
		fmt.Fprintf(w, "answer %d", code)
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *hookServer) calls() ([]webhooks.Payload, []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]webhooks.Payload(nil), h.payloads...), append([]string(nil), h.bad...)
}

// duplicates lists delivery ids received more than once.
func duplicates(ps []webhooks.Payload) []string {
	seen := map[string]int{}
	var dup []string
	for _, p := range ps {
		if seen[p.DeliveryID]++; seen[p.DeliveryID] == 2 {
			dup = append(dup, fmt.Sprintf("%s %s %s", p.Type, p.Event, p.DeliveryID))
		}
	}
	return dup
}

// slackOf returns the Slack messages about namespace ns whose fallback
// text starts with one of the prefixes ("Rollout of", "Promoted", ...).
func slackOf(sb *sandbox.Sandbox, ns, kind string) []slackd.Message {
	var out []slackd.Message
	app := ns + "/shop"
	for _, m := range sb.Slack.Messages() {
		switch kind {
		case "started":
			if strings.HasPrefix(m.Text, "Rollout of "+app+" started") {
				out = append(out, m)
			}
		case "promoted":
			if strings.HasPrefix(m.Text, "Promoted "+app) {
				out = append(out, m)
			}
		case "rolledback":
			if strings.HasPrefix(m.Text, "Rolled back "+app) {
				out = append(out, m)
			}
		case "held":
			if strings.HasPrefix(m.Text, app+" is held") {
				out = append(out, m)
			}
		case "any":
			if strings.Contains(m.Text, app) {
				out = append(out, m)
			}
		}
	}
	return out
}

// waitOutboxEmpty waits until every message of the Flight is delivered.
func waitOutboxEmpty(t testing.TB, sb *sandbox.Sandbox, ns string) *v1alpha1.Flight {
	return waitFlight(t, sb, ns, "shop", 60*time.Second, func(f *v1alpha1.Flight) bool {
		for _, e := range f.Status.Outbox {
			if e.State == v1alpha1.DeliveryPending {
				return false
			}
		}
		return true
	})
}

// A healthy rollout gated by confirm-promotion waits for the gate with its
// checks still running, across an engine restart, and promotes once the
// gate opens. Slack hears one start and one promotion, the event hook
// every transition once, and nothing is sent twice.
func TestConfirmPromotionGateHoldsUntilItOpens(t *testing.T) {
	sb, ns := suite.Namespace(t)
	installHookSecrets(t, sb)
	gate, events := newHookServer(t), newHookServer(t)
	gate.answer.Store(http.StatusForbidden)
	policies := fmt.Sprintf(`
webhookSecret: {name: fledge-webhooks, key: hmac}
hookNetworks: [127.0.0.0/8]  # the hooks listen on loopback
slack: {secret: fledge-slack}
policies:
  gated:
    steps: [20, 50]
    interval: 4s
    minInterval: 1s
    progressDeadline: 60s
    metrics:
    - {name: success-rate, min: 0.97, minSamples: 30}
    webhooks:
    - {name: release-manager, type: confirm-promotion, url: %q, pollInterval: 1s, timeout: 2s}
    - {name: audit, type: event, url: %q}
`, gate.URL, events.URL)
	e := startEngine(t, sb, ns, engineOptions{Policies: policies})
	shopApp(t, sb, ns, "gated", 150)

	rev := setImage(t, sb, ns, "shop", "example.com/shop:v2", nil)
	held := waitFlight(t, sb, ns, "shop", 90*time.Second, func(f *v1alpha1.Flight) bool {
		return f.Status.StepPassed && f.Status.Hold != nil && f.Status.Hold.Reason == v1alpha1.HoldGate
	})
	t.Logf("held: %s", held.Status.Hold.Message)
	if held.Status.Step != 1 || held.Status.CanaryWeight != 50 {
		t.Errorf("held at step %d, weight %d; want the last step (1) at 50%%", held.Status.Step, held.Status.CanaryWeight)
	}
	if !strings.Contains(held.Status.Hold.Message, "release-manager") || !strings.Contains(held.Status.Hold.Message, "403") {
		t.Errorf("hold message %q does not name the gate and its answer", held.Status.Hold.Message)
	}

	// A restart while held: nothing is sent again, and the checks keep
	// running (rounds go on being judged) while the gate stays closed.
	waitOutboxEmpty(t, sb, ns)
	e.Kill()
	e.Start()
	round := held.Status.Round
	waitFlight(t, sb, ns, "shop", 60*time.Second, func(f *v1alpha1.Flight) bool { return f.Status.Round >= round+2 })
	if f, _ := getFlight(context.Background(), sb, ns, "shop"); f.Status.Phase != v1alpha1.PhaseProgressing {
		t.Fatalf("phase %s while the gate is closed, want Progressing", f.Status.Phase)
	}

	gate.answer.Store(http.StatusOK)
	opened := time.Now()
	waitFlight(t, sb, ns, "shop", 90*time.Second, func(f *v1alpha1.Flight) bool {
		return f.Status.Phase == v1alpha1.PhaseSucceeded && f.Status.StableRevision == rev
	})
	t.Logf("promoted %s after the gate opened", time.Since(opened).Round(100*time.Millisecond))
	f := waitOutboxEmpty(t, sb, ns)

	if n := len(slackOf(sb, ns, "started")); n != 1 {
		t.Errorf("%d Slack messages for the start, want 1", n)
	}
	if n := len(slackOf(sb, ns, "promoted")); n != 1 {
		t.Errorf("%d Slack messages for the promotion, want 1", n)
	}
	if n := len(slackOf(sb, ns, "held")); n != 1 {
		t.Errorf("%d Slack messages for the hold at the gate, want 1 (once per hold, not per poll)", n)
	}
	for _, m := range slackOf(sb, ns, "any") {
		t.Logf("slack: %s", m.Text)
	}
	gateCalls, bad := gate.calls()
	eventCalls, badEvents := events.calls()
	if len(bad)+len(badEvents) > 0 {
		t.Errorf("calls that failed signature verification: %v %v", bad, badEvents)
	}
	if d := duplicates(gateCalls); len(d) > 0 {
		t.Errorf("gate calls sent twice: %v", d)
	}
	if d := duplicates(eventCalls); len(d) > 0 {
		t.Errorf("event deliveries sent twice: %v", d)
	}
	var got []string
	for _, p := range eventCalls {
		if p.Revision.Hash == rev {
			got = append(got, p.Event)
		}
	}
	t.Logf("gate asked %d times; event hook got %v", len(gateCalls), got)
	if !contains(got, "start") || !contains(got, "promoted") || !contains(got, "hold") {
		t.Errorf("event hook got %v, want start, hold and promoted among them", got)
	}
	for _, p := range gateCalls {
		if p.Type != webhooks.ConfirmPromotion || p.Name != "shop" || p.Namespace != ns || p.Revision.Hash != rev || len(p.Revision.Images) != 1 {
			t.Errorf("gate payload %+v: want type, flight, revision and images", p)
			break
		}
	}
	_ = f
	assertSettled(t, sb, ns)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// A faulty canary is rolled back, and Slack's message names the failing
// check with its value and threshold. Slack answers 500 for a while first:
// the messages arrive afterwards, once each, and the rollout never waits.
func TestRollbackMessageNamesTheFailingCheckAndSurvivesASlackOutage(t *testing.T) {
	sb, ns := suite.Namespace(t)
	installHookSecrets(t, sb)
	policies := `
slack: {secret: fledge-slack}
policies:
  fast:
    steps: [20, 50]
    interval: 4s
    minInterval: 1s
    failureLimit: 2
    progressDeadline: 60s
    metrics:
    - {name: success-rate, min: 0.97, minSamples: 30}
`
	startEngine(t, sb, ns, engineOptions{Policies: policies})
	shopApp(t, sb, ns, "fast", 150)

	sb.Slack.FailUntilCleared(http.StatusInternalServerError)
	t.Cleanup(sb.Slack.Clear)
	failuresBefore := sb.Slack.Failures()
	began := time.Now()
	rev := setImage(t, sb, ns, "shop", "example.com/shop:v2-bad", map[string]string{"sandbox.fledge.dev/error-rate": "0.2"})
	f := waitFlight(t, sb, ns, "shop", 90*time.Second, func(f *v1alpha1.Flight) bool {
		return f.Status.Phase == v1alpha1.PhaseRolledBack && f.Status.RejectedRevision == rev
	})
	t.Logf("rolled back after %s while Slack was down: %s", time.Since(began).Round(100*time.Millisecond), f.Status.Message)
	if n := len(slackOf(sb, ns, "any")); n != 0 {
		t.Fatalf("%d messages got through a Slack answering 500", n)
	}
	if sb.Slack.Failures() == failuresBefore {
		t.Fatal("fledge never tried Slack while it was down")
	}
	sb.Slack.Clear()
	waitOutboxEmpty(t, sb, ns)
	started, rolledBack := slackOf(sb, ns, "started"), slackOf(sb, ns, "rolledback")
	if len(started) != 1 || len(rolledBack) != 1 {
		t.Fatalf("after the outage: %d start and %d rollback messages, want 1 each", len(started), len(rolledBack))
	}
	msg := rolledBack[0].BlockText()
	t.Logf("rollback message:\n%s", msg)
	var failed *analysis.Check
	for _, d := range f.Status.Decisions {
		if d.Verdict == v1alpha1.VerdictRollback {
			for i, c := range d.Checks {
				if c.Outcome == analysis.Fail {
					failed = &d.Checks[i]
				}
			}
		}
	}
	if failed == nil || failed.Value == nil {
		t.Fatalf("no failed check with a value in the rollback decision")
	}
	value := fmt.Sprintf("%.4g", *failed.Value) // as Slack's message writes it, at least its first digits
	value = value[:min(len(value), 4)]
	for _, want := range []string{"success-rate", ">= 0.97", value, "example.com/shop:v2-bad"} {
		if !strings.Contains(msg, want) {
			t.Errorf("rollback message lacks %q", want)
		}
	}
	// Delivered in order: the start before the rollback.
	all := slackOf(sb, ns, "any")
	if !strings.HasPrefix(all[0].Text, "Rollout of") {
		t.Errorf("first message after the outage: %q, want the start", all[0].Text)
	}
	assertSettled(t, sb, ns)
}

// startLoadTester runs fledge-loadtester beside the sandbox, sending its
// load through the mesh (as with a sidecar), allowed to target services
// of the cluster only.
func startLoadTester(t testing.TB, sb *sandbox.Sandbox) string {
	t.Helper()
	binary := loadTesterCommand.build(t)
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte(hookSecret), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	p, err := sb.StartProcess("loadtester-"+t.Name(), []string{"HTTP_PROXY=" + sb.MeshProxyURL},
		binary, "--listen="+addr, "--allow=*.svc.cluster.local", "--secret-file="+secretFile)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop() })
	url := "http://" + addr
	for i := 0; ; i++ {
		resp, err := http.Get(url + "/healthz")
		if err == nil {
			resp.Body.Close()
			break
		}
		if i > 100 {
			t.Fatalf("load tester not up at %s: %v (log %s)", addr, err, p.LogPath())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return url
}

// A service without organic traffic: the checks lack samples, so the
// load-test hook runs on demand through the mesh, and the checks pass on
// its traffic.
func TestLoadTestHookGivesTheChecksEnoughSamples(t *testing.T) {
	sb, ns := suite.Namespace(t)
	installHookSecrets(t, sb)
	tester := startLoadTester(t, sb)
	policies := fmt.Sprintf(`
webhookSecret: {name: fledge-webhooks, key: hmac}
hookNetworks: [127.0.0.0/8]  # the hooks listen on loopback
policies:
  quiet:
    steps: [50]
    interval: 5s
    minInterval: 1s
    progressDeadline: 60s
    metrics:
    - {name: success-rate, min: 0.97, minSamples: 50}
    webhooks:
    - name: load
      type: rollout
      when: notEnoughData
      url: %s/
      timeout: 20s
      metadata:
        url: http://shop-canary.%s.svc.cluster.local/
        rate: "40"
        duration: 4s
      thresholds: {minRequests: 100, minSuccess: 0.95}
`, tester, ns)
	startEngine(t, sb, ns, engineOptions{Policies: policies})
	shopApp(t, sb, ns, "quiet", 0) // no organic traffic at all

	rev := setImage(t, sb, ns, "shop", "example.com/shop:v2", nil)
	f := waitFlight(t, sb, ns, "shop", 2*time.Minute, func(f *v1alpha1.Flight) bool {
		return f.Status.Phase == v1alpha1.PhaseSucceeded && f.Status.StableRevision == rev || f.Status.Phase == v1alpha1.PhaseRolledBack
	})
	if f.Status.Phase != v1alpha1.PhaseSucceeded {
		t.Fatalf("phase %s: %s", f.Status.Phase, f.Status.Message)
	}
	var judged []analysis.Check
	for _, d := range f.Status.Decisions {
		if d.Revision == rev && d.Verdict == v1alpha1.VerdictPromote {
			judged = d.Checks
		}
	}
	byName := map[string]analysis.Check{}
	for _, c := range judged {
		byName[c.Metric] = c
		t.Logf("check %s %s value=%v samples=%d %s", c.Metric, c.Outcome, deref(c.Value), c.Samples, c.Message)
	}
	if c := byName["success-rate"]; c.Outcome != analysis.Pass || c.Samples < 50 {
		t.Errorf("success-rate %s with %d samples, want a pass on at least 50 (the load test's)", c.Outcome, c.Samples)
	}
	if c := byName["hook:load/success"]; c.Outcome != analysis.Pass || c.Samples != 160 {
		t.Errorf("load test check %+v: want a pass on 160 requests (40/s for 4s)", c)
	}
	if served := sb.Mesh.WorkloadCounts(ns, "shop-canary"); served.Requests < 160 {
		t.Errorf("the canary served %d requests, want the load test's 160 at least", served.Requests)
	}
}

func deref(v *float64) any {
	if v == nil {
		return nil
	}
	return *v
}

// Hooks that answer badly: garbage, a hang past the timeout, a redirect to
// the cloud metadata address, a 100 MB body. Each is a check that cannot
// judge (onError: hold) with a clear, short message; the engine stays
// healthy and still takes an abort.
func TestBadHookAnswersHoldWithAClearMessage(t *testing.T) {
	sb, ns := suite.Namespace(t)
	installHookSecrets(t, sb)
	mux := http.NewServeMux()
	mux.HandleFunc("/garbage", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"requests": "lots", "success": "yes"}`)
	})
	mux.HandleFunc("/hang", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(30 * time.Second):
		}
	})
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://169.254.169.254/latest/meta-data/", http.StatusTemporaryRedirect)
	})
	mux.HandleFunc("/huge", func(w http.ResponseWriter, r *http.Request) {
		chunk := []byte(strings.Repeat("x", 1<<20))
		for range 100 {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	policies := fmt.Sprintf(`
webhookSecret: {name: fledge-webhooks, key: hmac}
hookNetworks: [127.0.0.0/8]  # the hooks listen on loopback
policies:
  hooked:
    steps: [20, 50]
    interval: 3s
    minInterval: 1s
    progressDeadline: 60s
    metrics:
    - {name: success-rate, min: 0.97, minSamples: 20}
    webhooks:
    - {name: garbage, type: rollout, url: %[1]q, onError: hold}
    - {name: hang, type: rollout, url: %[2]q, timeout: 1s, onError: hold}
    - {name: metadata, type: rollout, url: %[3]q, onError: hold}
    - {name: huge, type: rollout, url: %[4]q, onError: hold}
`, srv.URL+"/garbage", srv.URL+"/hang", srv.URL+"/redirect", srv.URL+"/huge")
	e := startEngine(t, sb, ns, engineOptions{Policies: policies})
	shopApp(t, sb, ns, "hooked", 150)

	setImage(t, sb, ns, "shop", "example.com/shop:v2", nil)
	f := waitFlight(t, sb, ns, "shop", 90*time.Second, func(f *v1alpha1.Flight) bool {
		return f.Status.Hold != nil && f.Status.Hold.Reason == v1alpha1.HoldAnalysisError
	})
	t.Logf("held: %s", f.Status.Hold.Message)
	want := map[string]string{
		"hook:garbage":  "requests",
		"hook:hang":     "timed out after 1s",
		"hook:metadata": "169.254.169.254",
		"hook:huge":     "larger than 1 MiB",
	}
	last := f.Status.Decisions[len(f.Status.Decisions)-1]
	for _, c := range last.Checks {
		sub, ok := want[c.Metric]
		if !ok {
			continue
		}
		delete(want, c.Metric)
		t.Logf("%s: %s: %s", c.Metric, c.Outcome, c.Message)
		if c.Outcome != analysis.Error || !strings.Contains(c.Message, sub) {
			t.Errorf("%s: %s %q, want an error saying %q", c.Metric, c.Outcome, c.Message, sub)
		}
		if len(c.Message) > 400 {
			t.Errorf("%s: a %d-byte message: bodies must never be copied whole", c.Metric, len(c.Message))
		}
	}
	if len(want) > 0 {
		t.Errorf("no checks for %v in the last decision", want)
	}
	if f.Status.Phase != v1alpha1.PhaseProgressing || f.Status.CanaryWeight != 20 {
		t.Errorf("phase %s at %d%%: bad hook answers must hold the step, not move or roll back", f.Status.Phase, f.Status.CanaryWeight)
	}
	// The engine is healthy: it is running and still acts.
	if exited, err := e.proc.Exited(); exited {
		t.Fatalf("engine exited: %v", err)
	}
	annotate(t, sb, ns, map[string]string{rollout.AnnotationAction: "abort", rollout.AnnotationActionReason: "bad hooks"})
	waitFlight(t, sb, ns, "shop", 30*time.Second, func(f *v1alpha1.Flight) bool { return f.Status.Phase == v1alpha1.PhaseAborted })
	assertSettled(t, sb, ns)
}

// annotate merges annotations into the Deployment "shop".
func annotate(t testing.TB, sb *sandbox.Sandbox, ns string, annotations map[string]string) {
	t.Helper()
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": annotations}})
	if _, err := sb.Kube.AppsV1().Deployments(ns).Patch(context.Background(), "shop", types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}
