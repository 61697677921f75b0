package cli

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/fledgehq/fledge/rollout/api"
	"github.com/fledgehq/fledge/rollout/api/apitest"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	"github.com/fledgehq/fledge/rollout/rolloutpb"
)

// progressing is a canary of rev-b at 40% (step 2 of 3).
func progressing() v1alpha1.FlightStatus {
	return v1alpha1.FlightStatus{
		Phase: v1alpha1.PhaseProgressing, StableRevision: "rev-a", CanaryRevision: "rev-b",
		Steps: []int32{10, 40, 70}, Step: 1, CanaryWeight: 40,
		Hold: &v1alpha1.Hold{Reason: v1alpha1.HoldNotEnoughData, Message: "12 requests, want 100"},
		Decisions: []v1alpha1.DecisionRecord{{Revision: "rev-b", Verdict: v1alpha1.VerdictHold, Step: 1, Weight: 40, Message: "not enough data",
			Repeats: 4, Since: &metav1.Time{Time: time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)}}},
	}
}

// harness is fledge's real gRPC server (TLS on loopback, the Authorizer)
// over a fake Backend holding prod/shop (progressing) and prod/cart
// (succeeded), and a way to run fledgectl against it.
type harness struct {
	srv     *apitest.Server
	backend *apitest.Backend
	env     map[string]string
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	b := apitest.NewBackend(0)
	b.Put(apitest.NewFlight("prod", "shop", progressing()), map[string]string{"team": "shop"})
	b.Put(apitest.NewFlight("prod", "cart", v1alpha1.FlightStatus{Phase: v1alpha1.PhaseSucceeded, StableRevision: "rev-c", CanaryRevision: "rev-c"}), nil)
	srv := apitest.Start(t, apitest.Options{Backend: b})
	// No kubeconfig unless a test writes one: never the developer's.
	return &harness{srv: srv, backend: b, env: map[string]string{"KUBECONFIG": filepath.Join(t.TempDir(), "none")}}
}

// connection is the flags that reach the harness's server as its user.
func (h *harness) connection() []string {
	return []string{"--server", h.srv.Addr, "--ca-file", h.srv.CAFile, "--token", apitest.Token, "-n", "prod"}
}

type result struct {
	code           int
	stdout, stderr string
}

// run runs fledgectl with the connection flags and args.
func (h *harness) run(ctx context.Context, args ...string) result {
	return h.runRaw(ctx, nil, nil, append(h.connection(), args...)...)
}

// runRaw runs fledgectl with args only; out and errOut, if set, get
// stdout and stderr.
func (h *harness) runRaw(ctx context.Context, out, errOut *lineBuffer, args ...string) result {
	if out == nil {
		out = &lineBuffer{}
	}
	if errOut == nil {
		errOut = &lineBuffer{}
	}
	a := &app{
		streams: Streams{In: strings.NewReader(""), Out: out, Err: errOut},
		getenv:  func(k string) string { return h.env[k] },
		backoff: backoff{initial: time.Millisecond, max: 10 * time.Millisecond, attempts: 3},
		now:     func() time.Time { return time.Date(2026, 11, 22, 10, 4, 5, 0, time.UTC) },
	}
	code := a.run(ctx, args)
	return result{code: code, stdout: out.String(), stderr: errOut.String()}
}

// lineBuffer is a concurrency-safe buffer that can tell when it holds n
// lines.
type lineBuffer struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	wants []lineWant
}

type lineWant struct {
	n  int
	ch chan struct{}
}

func (b *lineBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n, err := b.buf.Write(p)
	lines := bytes.Count(b.buf.Bytes(), []byte("\n"))
	kept := b.wants[:0]
	for _, w := range b.wants {
		if lines >= w.n {
			close(w.ch)
		} else {
			kept = append(kept, w)
		}
	}
	b.wants = kept
	return n, err
}

func (b *lineBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// lines returns a channel closed once the buffer holds n lines.
func (b *lineBuffer) lines(n int) <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	ch := make(chan struct{})
	if bytes.Count(b.buf.Bytes(), []byte("\n")) >= n {
		close(ch)
	} else {
		b.wants = append(b.wants, lineWant{n: n, ch: ch})
	}
	return ch
}

// waitWatching waits until n watches are subscribed to the Backend, so
// that changes made next reach them. It polls without a deadline: the
// test's timeout bounds it.
func (h *harness) waitWatching(n int) {
	for h.backend.Broadcaster().Subscribers() < n {
		time.Sleep(time.Millisecond)
	}
}

// closedAddress is a loopback address nothing listens on.
func closedAddress(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	return addr
}

func TestWaitExitCodes(t *testing.T) {
	type step func(*apitest.Backend)
	succeed := func(rev string) step {
		return func(b *apitest.Backend) {
			b.Update("prod", "shop", func(st *v1alpha1.FlightStatus) {
				st.Phase, st.StableRevision, st.CanaryRevision, st.Hold = v1alpha1.PhaseSucceeded, rev, rev, nil
			})
		}
	}
	canary := func(rev string, p v1alpha1.Phase) step {
		return func(b *apitest.Backend) {
			b.Update("prod", "shop", func(st *v1alpha1.FlightStatus) { st.CanaryRevision, st.Phase = rev, p })
		}
	}
	tests := []struct {
		name string
		args []string
		// Changes made once wait watches, in order.
		steps    []step
		wantCode int
		wantOut  string // in stdout
		wantErr  string // in stderr
	}{
		{
			name:     "exits 0 once the revision waited for is promoted",
			args:     []string{"wait", "shop", "--revision", "rev-b"},
			steps:    []step{canary("rev-b", v1alpha1.PhasePromoting), succeed("rev-b")},
			wantCode: ExitOK,
			wantOut:  "prod/shop: revision rev-b promoted",
			wantErr:  "Promoting step 2/3 [####------] 40%",
		},
		{
			name:     "does not count a Succeeded of an older revision",
			args:     []string{"wait", "shop", "--revision", "rev-d"},
			steps:    []step{succeed("rev-b"), canary("rev-d", v1alpha1.PhaseProgressing), canary("rev-d", v1alpha1.PhaseRolledBack)},
			wantCode: ExitRolledBack,
			wantErr:  "prod/shop: revision rev-d rolled back",
		},
		{
			name:     "exits 3 when the revision is aborted",
			args:     []string{"wait", "shop"},
			steps:    []step{canary("rev-b", v1alpha1.PhaseAborted)},
			wantCode: ExitAborted,
			wantErr:  "revision rev-b aborted",
		},
		{
			name:     "exits 1 when the revision is replaced before it finishes",
			args:     []string{"wait", "shop", "--revision", "rev-b"},
			steps:    []step{canary("rev-e", v1alpha1.PhaseProgressing)},
			wantCode: ExitError,
			wantErr:  "revision rev-b was replaced by rev-e",
		},
		{
			name:     "exits 1 when the Flight is deleted",
			args:     []string{"wait", "shop"},
			steps:    []step{func(b *apitest.Backend) { b.Delete("prod", "shop") }},
			wantCode: ExitError,
			wantErr:  "the Flight was deleted",
		},
		{
			name:     "exits at once when nothing is in flight",
			args:     []string{"wait", "cart"},
			wantCode: ExitOK,
			wantOut:  "prod/cart: revision rev-c promoted",
		},
		{
			name:     "exits 4 when the timeout passes first",
			args:     []string{"wait", "shop", "--timeout", "50ms"},
			wantCode: ExitTimeout,
			wantErr:  "timed out waiting (Progressing, step 2/3",
		},
		{
			name:     "resumes a broken watch and still sees the outcome",
			args:     []string{"wait", "shop", "-v"},
			steps:    []step{func(b *apitest.Backend) { b.Broadcaster().DropAll() }, canary("rev-b", v1alpha1.PhaseRolledBack)},
			wantCode: ExitRolledBack,
			wantErr:  `resuming from version "1"`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			done := make(chan result, 1)
			errOut := &lineBuffer{}
			go func() { done <- h.runRaw(t.Context(), nil, errOut, append(h.connection(), tc.args...)...) }()
			if len(tc.steps) > 0 {
				<-errOut.lines(1) // the initial state: changes come after it
			}
			for _, s := range tc.steps {
				h.waitWatching(1) // after DropAll, once resumed
				s(h.backend)
			}
			r := <-done
			if r.code != tc.wantCode || !strings.Contains(r.stdout, tc.wantOut) || !strings.Contains(r.stderr, tc.wantErr) {
				t.Errorf("exit %d, want %d\nstdout (want %q):\n%s\nstderr (want %q):\n%s", r.code, tc.wantCode, tc.wantOut, r.stdout, tc.wantErr, r.stderr)
			}
		})
	}
}

func TestExitCodesOfCalls(t *testing.T) {
	h := newHarness(t)
	ctx := t.Context()
	tests := []struct {
		name     string
		args     []string
		setup    func()
		wantCode int
		wantErr  string
	}{
		{"a Flight that does not exist is an error", []string{"status", "ghost"}, nil, ExitError, "flight prod/ghost not found"},
		{"an invalid call is an error", []string{"promote", "shop", "--request-id", "no spaces please"}, nil, ExitError, "request_id"},
		{"abort needs a reason before anything is sent", []string{"abort", "shop"}, nil, ExitError, "abort needs --reason"},
		{"a bad output format is an error", []string{"status", "shop", "-o", "xml"}, nil, ExitError, `-o "xml"`},
		{"set-image needs CONTAINER=IMAGE", []string{"set-image", "shop", "app"}, nil, ExitError, "want CONTAINER=IMAGE"},
		{
			name:     "a replica that stays not the leader is unavailable",
			args:     []string{"pause", "shop", "-v"},
			setup:    func() { h.backend.SetLeader(false, "fledge-1") },
			wantCode: ExitUnavailable,
			wantErr:  `not the leader (the leader is "fledge-1"); retrying`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.setup != nil {
				tc.setup()
			}
			r := h.run(ctx, tc.args...)
			if r.code != tc.wantCode || !strings.Contains(r.stderr, tc.wantErr) {
				t.Errorf("exit %d, want %d; stderr %q, want it to say %q", r.code, tc.wantCode, r.stderr, tc.wantErr)
			}
		})
	}

	t.Run("fledge unreachable", func(t *testing.T) {
		addr := closedAddress(t)
		for _, args := range [][]string{{"status", "shop"}, {"wait", "shop"}, {"resume", "shop"}} {
			r := h.runRaw(ctx, nil, nil, append([]string{"--server", addr, "--ca-file", h.srv.CAFile, "--token", "t", "-n", "prod"}, args...)...)
			if r.code != ExitUnavailable {
				t.Errorf("%v against a closed port: exit %d, want %d (%s)", args, r.code, ExitUnavailable, r.stderr)
			}
		}
	})
	t.Run("a token fledge does not know", func(t *testing.T) {
		r := h.runRaw(ctx, nil, nil, "--server", h.srv.Addr, "--ca-file", h.srv.CAFile, "--token", "stolen", "-n", "prod", "status", "shop")
		if r.code != ExitError || !strings.Contains(r.stderr, "invalid bearer token") {
			t.Errorf("exit %d, stderr %q", r.code, r.stderr)
		}
	})
	t.Run("a server whose certificate is not trusted", func(t *testing.T) {
		r := h.runRaw(ctx, nil, nil, "--server", h.srv.Addr, "--token", apitest.Token, "-n", "prod", "status", "shop")
		if r.code == ExitOK || !strings.Contains(r.stderr, "certificate") {
			t.Errorf("exit %d, stderr %q", r.code, r.stderr)
		}
	})
}

func TestStatusFormats(t *testing.T) {
	h := newHarness(t)
	ctx := t.Context()

	text := h.run(ctx, "status", "shop")
	for _, want := range []string{"Flight:", "prod/shop", "Phase:", "Progressing", "step 2/3 [####------] 40%", "NotEnoughData: 12 requests, want 100", "Canary:", "rev-b"} {
		if !strings.Contains(text.stdout, want) {
			t.Errorf("status text does not say %q:\n%s", want, text.stdout)
		}
	}

	for _, format := range []string{"json", "yaml"} {
		r := h.run(ctx, "status", "shop", "-o", format)
		if r.code != 0 {
			t.Fatalf("-o %s: exit %d: %s", format, r.code, r.stderr)
		}
		js := []byte(r.stdout)
		if format == "yaml" {
			var err error
			if js, err = yaml.YAMLToJSON(js); err != nil {
				t.Fatalf("-o yaml is not YAML: %v\n%s", err, r.stdout)
			}
		}
		var f rolloutpb.Flight
		if err := protojson.Unmarshal(js, &f); err != nil {
			t.Fatalf("-o %s is not a Flight: %v\n%s", format, err, r.stdout)
		}
		if f.GetName() != "shop" || f.GetCanaryWeight() != 40 || f.GetPhase() != rolloutpb.Phase_PHASE_PROGRESSING || f.GetHold().GetReason() != "NotEnoughData" {
			t.Errorf("-o %s: %v", format, &f)
		}
	}
}

func TestListAndExplain(t *testing.T) {
	h := newHarness(t)
	ctx := t.Context()
	r := h.run(ctx, "list")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "NAME") || !strings.HasPrefix(lines[1], "cart") || !strings.Contains(lines[2], "NotEnoughData") {
		t.Errorf("list:\n%s", r.stdout)
	}
	r = h.run(ctx, "list", "-l", "team=shop", "-o", "json")
	var resp rolloutpb.ListResponse
	if err := protojson.Unmarshal([]byte(r.stdout), &resp); err != nil || len(resp.GetFlights()) != 1 || resp.GetFlights()[0].GetName() != "shop" {
		t.Errorf("list -l team=shop -o json: %v\n%s", err, r.stdout)
	}
	r = h.run(ctx, "explain", "shop")
	if !strings.Contains(r.stdout, "rev-b  step 2  40%  hold  not enough data\n    the same 5 rounds in all, since 2026-03-01T10:00:00Z") {
		t.Errorf("explain:\n%s", r.stdout)
	}
}

func TestWatchPrintsOneLinePerChange(t *testing.T) {
	for _, tc := range []struct {
		format string
		want   []string
	}{
		{"text", []string{
			"10:04:05 prod/shop Progressing step 2/3 [####------] 40% | hold NotEnoughData: 12 requests, want 100",
			"10:04:05 prod/shop Progressing step 3/3 [#######---] 70%",
		}},
		{"json", []string{`"type":"TYPE_ADDED"`, `"type":"TYPE_SYNCED"`, `"canaryWeight":70`}},
	} {
		t.Run(tc.format, func(t *testing.T) {
			h := newHarness(t)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			out := &lineBuffer{}
			done := make(chan result, 1)
			go func() {
				done <- h.runRaw(ctx, out, nil, append(h.connection(), "watch", "shop", "-o", tc.format)...)
			}()
			<-out.lines(1) // the initial state: changes come after it
			h.backend.Update("prod", "shop", func(st *v1alpha1.FlightStatus) { st.Step, st.CanaryWeight, st.Hold = 2, 70, nil })
			<-out.lines(len(tc.want))
			cancel()
			r := <-done
			if r.code != 0 {
				t.Errorf("exit %d after an interrupt: %s", r.code, r.stderr)
			}
			lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
			if len(lines) != len(tc.want) {
				t.Fatalf("%d lines, want %d:\n%s", len(lines), len(tc.want), r.stdout)
			}
			for i, want := range tc.want {
				if !strings.Contains(strings.ReplaceAll(lines[i], " ", ""), strings.ReplaceAll(want, " ", "")) {
					t.Errorf("line %d: %s\nwant %s", i, lines[i], want)
				}
			}
		})
	}
}

func TestSetImageThenWaitForItsRevision(t *testing.T) {
	h := newHarness(t)
	ctx := t.Context()
	r := h.run(ctx, "set-image", "shop", "app=registry.example/shop:1.4.2", "--reason", "release 1.4.2")
	rev := strings.TrimSpace(r.stdout)
	if r.code != 0 || rev == "" || strings.Contains(rev, " ") {
		t.Fatalf("set-image: exit %d, stdout %q (want the revision alone), stderr %s", r.code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stderr, "(was registry.example/shop:1); pending revision "+rev) {
		t.Errorf("set-image stderr: %s", r.stderr)
	}
	done := make(chan result, 1)
	errOut := &lineBuffer{}
	go func() {
		done <- h.runRaw(ctx, nil, errOut, append(h.connection(), "wait", "shop", "--revision", rev)...)
	}()
	<-errOut.lines(1)
	// What the controller would do with the new template.
	h.backend.Update("prod", "shop", func(st *v1alpha1.FlightStatus) {
		st.Phase, st.CanaryRevision, st.Step, st.CanaryWeight = v1alpha1.PhaseProgressing, rev, -1, 0
	})
	h.backend.Update("prod", "shop", func(st *v1alpha1.FlightStatus) { st.Phase, st.StableRevision = v1alpha1.PhaseSucceeded, rev })
	if w := <-done; w.code != ExitOK || !strings.Contains(w.stdout, "revision "+rev+" promoted") {
		t.Errorf("wait --revision %s: exit %d\n%s\n%s", rev, w.code, w.stdout, w.stderr)
	}
}

func TestMutatingCommands(t *testing.T) {
	h := newHarness(t)
	ctx := t.Context()
	r := h.run(ctx, "promote", "shop", "--full", "--request-id", "pipeline-4211", "-o", "json")
	var resp rolloutpb.PromoteResponse
	if err := protojson.Unmarshal([]byte(r.stdout), &resp); err != nil {
		t.Fatalf("promote -o json: %v\n%s\n%s", err, r.stdout, r.stderr)
	}
	if a := resp.GetAction(); a.GetKind() != rolloutpb.ActionKind_ACTION_KIND_PROMOTE_FULL || a.GetRequestId() != "pipeline-4211" || a.GetBy() != "api:"+apitest.User {
		t.Errorf("promote --full answered %v", a)
	}
	again := h.run(ctx, "promote", "shop", "--full", "--request-id", "pipeline-4211")
	if again.code != 0 || !strings.Contains(again.stdout, "request id pipeline-4211 had been taken before") {
		t.Errorf("the same request id again: exit %d\n%s%s", again.code, again.stdout, again.stderr)
	}
	if calls := h.backend.Calls(); len(calls) != 2 || calls[0].Action.Kind != v1alpha1.ActionPromoteFull || !calls[1].Replayed {
		t.Errorf("backend calls: %+v", calls)
	}

	v := h.run(ctx, "abort", "shop", "--reason", "errors in the logs", "-v")
	if v.code != 0 || !strings.Contains(v.stdout, "abort prod/shop: Aborted") {
		t.Errorf("abort: exit %d\n%s%s", v.code, v.stdout, v.stderr)
	}
	calls := h.backend.Calls()
	id := calls[len(calls)-1].Action.RequestID
	if !strings.HasPrefix(id, "fledgectl-") || !strings.Contains(v.stderr, "request id: "+id) {
		t.Errorf("made-up request id %q; -v said: %s", id, v.stderr)
	}
	retry := h.run(ctx, "retry", "shop", "--revision", "rev-b")
	if retry.code != 0 || !strings.Contains(retry.stdout, "retry prod/shop: Progressing") {
		t.Errorf("retry: exit %d\n%s%s", retry.code, retry.stdout, retry.stderr)
	}
}

func TestCredentialsAndNamespaceResolution(t *testing.T) {
	h := newHarness(t)
	ctx := t.Context()

	// From the environment.
	h.env[EnvServer], h.env[EnvToken], h.env[EnvNamespace] = h.srv.Addr, apitest.Token, "prod"
	if r := h.runRaw(ctx, nil, nil, "--ca-file", h.srv.CAFile, "status", "shop"); r.code != 0 {
		t.Errorf("from the environment: exit %d: %s", r.code, r.stderr)
	}
	// Flags first.
	if r := h.runRaw(ctx, nil, nil, "--ca-file", h.srv.CAFile, "-n", "staging", "status", "shop"); r.code != ExitError || !strings.Contains(r.stderr, "flight staging/shop not found") {
		t.Errorf("-n over the environment: exit %d: %s", r.code, r.stderr)
	}

	// From the kubeconfig's context: token file and namespace.
	delete(h.env, EnvToken)
	delete(h.env, EnvNamespace)
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(apitest.Token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(dir, "config")
	if err := os.WriteFile(kubeconfig, fmt.Appendf(nil, `apiVersion: v1
kind: Config
current-context: other
clusters:
- name: c
  cluster: {server: "https://kubernetes.example:6443"}
users:
- name: ci
  user: {tokenFile: %q}
- name: nobody
  user: {}
contexts:
- name: ci
  context: {cluster: c, user: ci, namespace: prod}
- name: other
  context: {cluster: c, user: nobody, namespace: staging}
`, tokenFile), 0o600); err != nil {
		t.Fatal(err)
	}
	h.env["KUBECONFIG"] = kubeconfig
	if r := h.runRaw(ctx, nil, nil, "--ca-file", h.srv.CAFile, "--context", "ci", "status", "shop"); r.code != 0 {
		t.Errorf("from the kubeconfig context ci: exit %d: %s", r.code, r.stderr)
	}
	r := h.runRaw(ctx, nil, nil, "--ca-file", h.srv.CAFile, "-v", "status", "shop")
	if r.code != ExitError || !strings.Contains(r.stderr, `kubeconfig user "nobody" has no token`) || !strings.Contains(r.stderr, "no credentials") {
		t.Errorf("the current context, without a token: exit %d: %s", r.code, r.stderr)
	}
	if r := h.runRaw(ctx, nil, nil, "--ca-file", h.srv.CAFile, "--context", "missing", "status", "shop"); r.code != ExitError || !strings.Contains(r.stderr, `no context "missing"`) {
		t.Errorf("a context that does not exist: exit %d: %s", r.code, r.stderr)
	}

	// The server never comes from the kubeconfig.
	delete(h.env, EnvServer)
	if r := h.runRaw(ctx, nil, nil, "--context", "ci", "status", "shop"); r.code != ExitError || !strings.Contains(r.stderr, "--server") {
		t.Errorf("without a server: exit %d: %s", r.code, r.stderr)
	}
}

func TestNotLeaderMatchesTheServer(t *testing.T) {
	// fledgectl reads the refusal without importing the server's package.
	if api.ErrorDomain != "fledge.dev" || api.ReasonNotLeader != "NOT_LEADER" {
		t.Errorf("the server's not-leader detail is %s/%s: update notLeader", api.ErrorDomain, api.ReasonNotLeader)
	}
}
