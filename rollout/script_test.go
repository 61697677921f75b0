package rollout

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/fledgehq/fledge/analysis"
	"github.com/fledgehq/fledge/flags"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	"github.com/fledgehq/fledge/traffic"
	"github.com/fledgehq/fledge/webhooks"
)

var rewrite = flag.Bool("rewrite", false, "rewrite the golden transcripts in testdata/")

// TestScripts plays every testdata/*.txt rollout script against Decide and
// compares the transcript with testdata/*.golden, so that a change in
// behaviour reads as a text diff. Run with -rewrite to accept changes.
//
// A script drives a small model of the cluster that applies each
// decision's actions (weights, pausing, the canary) the way the executor
// and Kubernetes would, while the script controls what Kubernetes does on
// its own (pods becoming ready, a rollout finishing) and the clock.
//
//	policy steps=10,50 interval=1m failure-limit=2 deadline=5m
//	world desired=r2 settled=false canary-ready=true ...
//	wait 1m
//	checks success-rate=pass latency-p95=fail:612
//	action abort [by=...]
//	decide
func TestScripts(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.txt")
	if len(files) == 0 {
		t.Fatal("no scripts in testdata")
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txt"), func(t *testing.T) {
			got := runScript(t, f)
			golden := strings.TrimSuffix(f, ".txt") + ".golden"
			if *rewrite {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -rewrite to create it)", err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("transcript differs from %s (-want +got; -rewrite accepts):\n%s", golden, diff)
			}
		})
	}
}

// world is the cluster as the script's decisions shape it.
type world struct {
	Observed
	now    time.Time
	policy *Policy
	status v1alpha1.FlightStatus
	checks []analysis.Check
	action *ActionRequest
	// calls and delivered are the background runner's answers, given by
	// the script and handed to Decide until the status records them.
	calls     map[string]CallResult
	delivered map[string]DeliveryResult
	// flagDocs are the release flags' ConfigMaps, gates the flag gates'
	// answers.
	flagDocs map[string]FlagDoc
	gates    map[string]flags.GateResult
	lastLog  []v1alpha1.DecisionRecord
	// written is the last document fledge wrote per ConfigMap key;
	// dropWrites makes every write fail (an immutable ConfigMap).
	written    map[string]string
	dropWrites bool
	inUse      map[string]string
}

var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func runScript(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := &world{now: epoch, policy: scriptPolicy(t, nil)}
	w.DeploymentCurrent = true // unless a script says otherwise
	w.Weights = traffic.Weights{Stable: 100}
	var out strings.Builder
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			out.WriteString(text + "\n")
			continue
		}
		fmt.Fprintf(&out, "> %s\n", text)
		fields := strings.Fields(text)
		args := fields[1:]
		fail := func(format string, a ...any) { t.Fatalf("%s:%d: %s", path, line, fmt.Sprintf(format, a...)) }
		switch fields[0] {
		case "policy":
			w.policy = scriptPolicy(t, args)
		case "world":
			if err := w.set(args); err != nil {
				fail("%v", err)
			}
		case "wait":
			d, err := time.ParseDuration(args[0])
			if err != nil {
				fail("%v", err)
			}
			w.now = w.now.Add(d)
		case "checks":
			checks, err := parseChecks(args, w.now)
			if err != nil {
				fail("%v", err)
			}
			w.checks = checks
		case "action":
			w.action = &ActionRequest{Kind: v1alpha1.ActionKind(args[0]), By: "annotation"}
		case "hook":
			if err := w.addHook(args); err != nil {
				fail("%v", err)
			}
		case "slack":
			w.policy.Slack = &Slack{Secret: "fledge-slack"}
		case "answer":
			if err := w.answer(args); err != nil {
				fail("%v", err)
			}
		case "deliver":
			if err := w.deliver(args); err != nil {
				fail("%v", err)
			}
		case "cohort":
			// cohort name header value [min-duration] [min-samples]
			p := *w.policy
			c := Cohort{Name: args[0], Route: traffic.Cohort{Name: args[0], Header: args[1], Exact: args[2]}, Attribute: args[1], Value: args[2], MinDuration: p.Interval}
			if len(args) > 3 {
				c.MinDuration, _ = time.ParseDuration(args[3])
			}
			if len(args) > 4 {
				c.MinSamples, _ = strconv.ParseInt(args[4], 10, 64)
			}
			p.Cohorts = append(append([]Cohort(nil), p.Cohorts...), c)
			w.policy = &p
		case "mirror":
			// mirror percent [duration] [only] [compare=max]: only is
			// strategy: mirror; compare compares responses, at most max
			// differing
			p := *w.policy
			pct, _ := strconv.Atoi(args[0])
			c := Cohort{Name: MirrorName, Mirror: int32(pct), MinDuration: p.Interval}
			if len(args) > 1 {
				c.MinDuration, _ = time.ParseDuration(args[1])
			}
			for _, a := range args[2:] {
				switch k, v, _ := strings.Cut(a, "="); k {
				case "only":
					p.Strategy, p.Steps, p.MaxWeight = StrategyMirror, nil, 0
				case "compare":
					most, _ := strconv.ParseFloat(v, 64)
					c.Compared, c.Check = true, &analysis.Metric{Name: analysis.ResponseDiff, Max: &most, MinSamples: 100, Interval: p.Interval}
				}
			}
			p.Mirror = &c
			w.policy = &p
		case "bluegreen":
			// bluegreen header value [pre-promotion] [post-promotion] [scale-down-delay]
			p := *w.policy
			bg := &BlueGreen{Preview: Cohort{Name: PreviewName, Route: traffic.Cohort{Name: PreviewName, Header: args[0], Exact: args[1]}, Attribute: args[0], Value: args[1], MinDuration: p.Interval},
				PostPromotion: p.Interval}
			for i, d := range []*time.Duration{&bg.Preview.MinDuration, &bg.PostPromotion, &bg.ScaleDownDelay} {
				if len(args) > 2+i {
					*d, _ = time.ParseDuration(args[2+i])
				}
			}
			bg.ScaleDownDelay = max(bg.ScaleDownDelay, bg.PostPromotion)
			p.Strategy, p.BlueGreen, p.Steps, p.MaxWeight = StrategyBlueGreen, bg, nil, 0
			w.policy = &p
		case "sticky":
			p := *w.policy
			p.Sticky = &traffic.Sticky{Cookie: DefaultStickyCookie, MaxAge: 3600}
			w.policy = &p
		case "gate":
			// gate flag: the policy asks it; gate flag=Open|Closed|Unreadable: its answer
			flag, verdict, answered := strings.Cut(args[0], "=")
			if !answered {
				p := *w.policy
				p.FlagGates = append(append([]string(nil), p.FlagGates...), flag)
				w.policy = &p
				break
			}
			if w.gates == nil {
				w.gates = map[string]flags.GateResult{}
			}
			g := flags.GateResult{Flag: flag, Verdict: flags.Verdict(verdict), Variant: "off", Reason: "TARGETING_MATCH"}
			if g.Verdict == flags.Open {
				g.Variant = "on"
			}
			if g.Verdict == flags.Unreadable {
				g.Variant, g.Reason = "", "flag source: configmap fledge-system/gates: not found"
			}
			w.gates[flag] = g
		case "release-flag":
			// release-flag flag configmap: linked, served off by default
			p := *w.policy
			p.ReleaseFlags = append(append([]ReleaseFlag(nil), p.ReleaseFlags...), ReleaseFlag{
				ConfigMap: args[1], Key: DefaultFlagKey, Final: "on", Link: flags.Link{Flag: args[0], On: "on", Off: "off", BucketBy: "targetingKey"}})
			w.policy = &p
			if w.flagDocs == nil {
				w.flagDocs = map[string]FlagDoc{}
			}
			w.flagDocs[FlagDocKey(args[1], DefaultFlagKey)] = FlagDoc{ResourceVersion: "1",
				Doc: `{"flags":{"` + args[0] + `":{"state":"ENABLED","variants":{"on":true,"off":false},"defaultVariant":"off"},"other":{"state":"ENABLED","variants":{"on":true,"off":false},"defaultVariant":"on"}}}`}
		case "edit-flag":
			// edit-flag configmap flag|other variant: a person sets a flag's default variant
			k := FlagDocKey(args[0], DefaultFlagKey)
			fd := w.flagDocs[k]
			var doc map[string]map[string]map[string]any
			if err := json.Unmarshal([]byte(fd.Doc), &doc); err != nil {
				fail("%v", err)
			}
			doc["flags"][args[1]]["defaultVariant"] = args[2]
			delete(doc["flags"][args[1]], "targeting")
			b, _ := json.Marshal(doc)
			rv, _ := strconv.Atoi(fd.ResourceVersion)
			w.flagDocs[k] = FlagDoc{Doc: string(b), ResourceVersion: strconv.Itoa(rv + 1)}
		case "restore-flags":
			// restore-flags configmap: a person puts back what fledge last wrote
			k := FlagDocKey(args[0], DefaultFlagKey)
			rv, _ := strconv.Atoi(w.flagDocs[k].ResourceVersion)
			w.flagDocs[k] = FlagDoc{Doc: w.written[k], ResourceVersion: strconv.Itoa(rv + 1)}
		case "fix-flags":
			k := FlagDocKey(args[0], DefaultFlagKey)
			fd := w.flagDocs[k]
			fd.Err = ""
			w.flagDocs[k] = fd
		case "flag-in-use":
			// flag-in-use flag configmap flight: another Flight steps it; "-" frees it
			if args[2] == "-" {
				w.inUse = nil
				break
			}
			w.inUse = map[string]string{FlagID(args[1], DefaultFlagKey, args[0]): args[2]}
		case "drop-writes":
			w.dropWrites = args[0] == "on"
		case "final-variant":
			// final-variant v: the linked flags' final variant
			p := *w.policy
			p.ReleaseFlags = append([]ReleaseFlag(nil), p.ReleaseFlags...)
			for i := range p.ReleaseFlags {
				p.ReleaseFlags[i].Final = args[0]
			}
			w.policy = &p
		case "break-flags":
			k := FlagDocKey(args[0], DefaultFlagKey)
			fd := w.flagDocs[k]
			fd.Err = "configmap shop/" + args[0] + ": data." + DefaultFlagKey + ": not a valid flagd flag document: flags.x: state is required"
			w.flagDocs[k] = fd
		case "decide":
			out.WriteString(w.decide())
		default:
			fail("unknown command %q", fields[0])
		}
	}
	return out.String()
}

// decide runs Decide (twice if it asks for checks, as the controller does)
// and applies the decision to the world.
func (w *world) decide() string {
	w.Namespace, w.Name, w.UID = "shop", "web", "uid-1"
	in := Input{Now: w.now, Policy: w.policy, Status: w.status, Observed: w.Observed, Action: w.action, Calls: w.calls, Delivered: w.delivered, FlagDocs: w.flagDocs, FlagsInUse: w.inUse}
	for _, g := range w.policy.FlagGates {
		if r, ok := w.gates[g]; ok {
			in.Gates = append(in.Gates, r)
		}
	}
	d := Decide(in)
	var b strings.Builder
	if d.NeedChecks {
		b.WriteString("  needs checks\n")
		in.Checks = w.checks
		if len(in.Checks) == 0 {
			return b.String() + "  (no checks given: nothing decided)\n"
		}
		d = Decide(in)
		w.checks = nil
	}
	w.status = d.Status
	for _, a := range d.Actions {
		fmt.Fprintf(&b, "  %s\n", a)
		w.apply(a)
	}
	st := d.Status
	fmt.Fprintf(&b, "  = phase=%s step=%d weight=%d failed=%d stable=%s canary=%s", st.Phase, st.Step, st.CanaryWeight, st.FailedChecks, st.StableRevision, st.CanaryRevision)
	if st.RejectedRevision != "" {
		fmt.Fprintf(&b, " rejected=%s", st.RejectedRevision)
	}
	if st.PromotionStage != "" {
		fmt.Fprintf(&b, " stage=%s", st.PromotionStage)
	}
	fmt.Fprintf(&b, " requeue=%s\n", d.RequeueAfter)
	if st.Hold != nil {
		fmt.Fprintf(&b, "  = hold %s: %s\n", st.Hold.Reason, st.Hold.Message)
	}
	if st.Message != "" {
		fmt.Fprintf(&b, "  = %s\n", st.Message)
	}
	for _, c := range st.Calls {
		if r, ok := w.calls[c.ID]; ok && c.State != v1alpha1.CallPending && r.State == c.State {
			delete(w.calls, c.ID) // recorded: the runner may forget it
		}
	}
	var calls, outbox []string
	for _, c := range st.Calls {
		calls = append(calls, fmt.Sprintf("%s(%s step=%d round=%d)=%s", c.Hook, c.Type, c.Step, c.Round, c.State))
	}
	for _, e := range st.Outbox {
		if _, ok := w.delivered[e.ID]; ok && e.State != v1alpha1.DeliveryPending {
			delete(w.delivered, e.ID)
		}
		outbox = append(outbox, fmt.Sprintf("%s:%s=%s", e.Channel, e.Event, e.State))
	}
	if len(calls) > 0 {
		fmt.Fprintf(&b, "  = calls %s\n", strings.Join(calls, " "))
	}
	if len(outbox) > 0 {
		fmt.Fprintf(&b, "  = outbox %s\n", strings.Join(outbox, " "))
	}
	for _, f := range st.Flags {
		fmt.Fprintf(&b, "  = flag %s %s: %s", f.Flag, f.State, f.Serving)
		if f.Message != "" {
			fmt.Fprintf(&b, " (%s)", f.Message)
		}
		b.WriteString("\n")
	}
	if n := len(st.Decisions); n > 0 && len(st.Decisions[n-1].Flags) > 0 && len(w.lastLog) != n {
		fmt.Fprintf(&b, "  = log %s: %s\n", st.Decisions[n-1].Verdict, strings.Join(st.Decisions[n-1].Flags, "; "))
	}
	w.lastLog = st.Decisions
	return b.String()
}

// addHook reads "name type [when=notEnoughData] [onError=hold]
// [deadline=1m] [onDeadline=rollback] [poll=10s] [min-success=0.99]".
func (w *world) addHook(args []string) error {
	if len(args) < 2 {
		return fmt.Errorf("hook: want name and type")
	}
	h := Hook{Name: args[0], Type: webhooks.Type(args[1]), URL: "http://hooks.test/" + args[0], Timeout: 10 * time.Second,
		Deadline: time.Hour, PollInterval: 10 * time.Second}
	for _, kv := range args[2:] {
		k, v, _ := strings.Cut(kv, "=")
		var err error
		switch k {
		case "when":
			h.OnNotEnoughData = v == "notEnoughData"
		case "onError":
			h.HoldOnError = v == "hold"
		case "deadline":
			h.Deadline, err = time.ParseDuration(v)
		case "onDeadline":
			h.RollbackOnDeadline = v == "rollback"
		case "poll":
			h.PollInterval, err = time.ParseDuration(v)
		case "min-success":
			f, _ := strconv.ParseFloat(v, 64)
			h.Thresholds = &LoadThresholds{MinSuccess: &f, MinRequests: 100}
		default:
			return fmt.Errorf("unknown hook key %q", k)
		}
		if err != nil {
			return err
		}
	}
	p := *w.policy
	p.Hooks = append(append([]Hook(nil), p.Hooks...), h)
	p.WebhookSecret = &SecretRef{Name: "hooks", Key: "hmac"}
	w.policy = &p
	return nil
}

// answer gives the pending call of a hook its answer:
// "name ok|rejected|error [load=requests:success:p95]".
func (w *world) answer(args []string) error {
	if len(args) < 2 {
		return fmt.Errorf("answer: want hook name and ok, rejected or error")
	}
	var id string
	for _, c := range w.status.Calls {
		if c.Hook == args[0] && c.State == v1alpha1.CallPending {
			id = c.ID
		}
	}
	if id == "" {
		return fmt.Errorf("answer: no pending call of hook %q", args[0])
	}
	r := CallResult{At: w.now, Attempts: 1}
	switch args[1] {
	case "ok":
		r.State, r.Status, r.Message = v1alpha1.CallOK, 200, "200 OK"
	case "rejected":
		r.State, r.Status, r.Message = v1alpha1.CallRejected, 403, "403 Forbidden: not yet"
	case "error":
		r.State, r.Message = v1alpha1.CallError, "timed out after 10s"
	default:
		return fmt.Errorf("answer: %q: want ok, rejected or error", args[1])
	}
	for _, kv := range args[2:] {
		if v, ok := strings.CutPrefix(kv, "load="); ok {
			parts := strings.Split(v, ":")
			n, _ := strconv.ParseUint(parts[0], 10, 64)
			succ, _ := strconv.ParseFloat(parts[1], 64)
			p95, _ := strconv.ParseFloat(parts[2], 64)
			r.Load = &webhooks.LoadResult{LoadFigures: webhooks.LoadFigures{Requests: n, Success: succ, P95Ms: p95}}
		}
	}
	if w.calls == nil {
		w.calls = map[string]CallResult{}
	}
	w.calls[id] = r
	return nil
}

// deliver settles the oldest pending outbox entry of a channel:
// "slack|hook:<name> ok|fail".
func (w *world) deliver(args []string) error {
	for _, e := range w.status.Outbox {
		if e.Channel != args[0] || e.State != v1alpha1.DeliveryPending {
			continue
		}
		if _, done := w.delivered[e.ID]; done {
			continue
		}
		if w.delivered == nil {
			w.delivered = map[string]DeliveryResult{}
		}
		w.delivered[e.ID] = DeliveryResult{Delivered: args[1] == "ok", Attempts: 3, Message: "slack: 500 Internal Server Error", At: w.now}
		return nil
	}
	return fmt.Errorf("deliver: nothing pending on %q", args[0])
}

// parseChecks reads "metric=outcome[:value[:samples]]".
func parseChecks(args []string, now time.Time) ([]analysis.Check, error) {
	var checks []analysis.Check
	for _, kv := range args {
		name, spec, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("check %q: want metric=outcome[:value[:samples]]", kv)
		}
		parts := strings.Split(spec, ":")
		c := analysis.Check{Metric: name, Outcome: analysis.Outcome(parts[0]), Threshold: thresholds[name], Samples: 500, At: now}
		if len(parts) > 1 && parts[1] != "" {
			v, err := strconv.ParseFloat(parts[1], 64)
			if err != nil {
				return nil, err
			}
			c.Value = &v
		}
		if len(parts) > 2 {
			n, _ := strconv.ParseInt(parts[2], 10, 64)
			c.Samples = n
		}
		switch c.Outcome {
		case analysis.NotEnoughData:
			c.Message = fmt.Sprintf("%d samples, want at least 100", c.Samples)
		case analysis.Error:
			c.Samples = 0
			c.Message = "prometheus: connection refused"
		}
		checks = append(checks, c)
	}
	sort.SliceStable(checks, func(i, j int) bool { return checks[i].Metric < checks[j].Metric })
	return checks, nil
}

var thresholds = map[string]string{"success-rate": ">= 0.99", "latency-p95": "<= 500", "response-diff": "<= 0.01"}

func scriptPolicy(t *testing.T, args []string) *Policy {
	p := &Policy{
		Name: "script", Steps: []int32{10, 50}, Interval: time.Minute, FailureLimit: 1,
		ProgressDeadline: 5 * time.Minute, MinInterval: 10 * time.Second, MaxWeight: 50,
	}
	for _, kv := range args {
		k, v, _ := strings.Cut(kv, "=")
		var err error
		switch k {
		case "steps":
			p.Steps = nil
			for _, s := range strings.Split(v, ",") {
				n, _ := strconv.Atoi(s)
				p.Steps = append(p.Steps, int32(n))
			}
		case "interval":
			p.Interval, err = time.ParseDuration(v)
		case "failure-limit":
			p.FailureLimit, err = strconv.Atoi(v)
		case "deadline":
			p.ProgressDeadline, err = time.ParseDuration(v)
		case "baseline":
			p.Baseline = v
		case "min-canary":
			var n int
			n, err = strconv.Atoi(v)
			p.MinCanaryReplicas = int32(n)
		default:
			err = fmt.Errorf("unknown policy key %q", k)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return p
}
