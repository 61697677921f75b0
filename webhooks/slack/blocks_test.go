package slack

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/slack-go/slack"

	"github.com/fledgehq/fledge/analysis"
	"github.com/fledgehq/fledge/webhooks"
)

func ptr(v float64) *float64 { return &v }

// base is a rollout of shop/checkout from v1 to v2 on a three-step plan.
func base(event string) webhooks.Notification {
	return webhooks.Notification{
		Event: event, Name: "checkout", Namespace: "shop", Revision: "7f9c4d",
		FromImages: []string{"registry.example/shop/checkout:v1"},
		ToImages:   []string{"registry.example/shop/checkout:v2"},
		Plan:       []int32{10, 25, 50},
		At:         time.Date(2026, 3, 1, 12, 30, 0, 0, time.UTC),
	}
}

func with(n webhooks.Notification, f func(*webhooks.Notification)) webhooks.Notification {
	f(&n)
	return n
}

var (
	failingRate = analysis.Check{
		Metric: "success-rate", Value: ptr(0.912345678), Threshold: ">= 0.99", Samples: 1834,
		Outcome: analysis.Fail, Message: "0.912346 is below the minimum of 0.99",
	}
	failingP99 = analysis.Check{
		Metric: "latency-p99", Value: ptr(1234.5678), Threshold: "<= 500", Samples: 1834,
		Outcome: analysis.Fail, Message: "1234.57 is above the maximum of 500",
	}
	passingRate = analysis.Check{Metric: "success-rate", Value: ptr(0.99874), Threshold: ">= 0.99", Samples: 5120, Outcome: analysis.Pass}
	passingP99  = analysis.Check{Metric: "latency-p99", Value: ptr(212.5), Threshold: "<= 500", Samples: 5120, Outcome: analysis.Pass}
	starved     = analysis.Check{
		Metric: "success-rate", Threshold: ">= 0.99", Samples: 3, Outcome: analysis.NotEnoughData,
		Message: "3 requests served by the canary in the last 1m, fewer than the 100 required",
	}
)

func TestBlocksTellEachEvent(t *testing.T) {
	tests := []struct {
		name string
		n    webhooks.Notification
		// want are facts the blocks must show, inText those the fallback
		// line must; absent must be in neither.
		want, inText, absent []string
	}{
		{
			name: "a start names the app, both images and the plan",
			n:    base("Started"),
			want: []string{"Rollout started: checkout", "*App*\ncheckout", "*Namespace*\nshop",
				"`registry.example/shop/checkout:v1`", "`registry.example/shop/checkout:v2`",
				"10% → 25% → 50% → promote", "revision `7f9c4d`"},
			inText: []string{"shop/checkout", "checkout:v1 → registry.example/shop/checkout:v2", "plan 10% → 25% → 50% → promote"},
		},
		{
			name: "a start of several containers lists every image in container order",
			n: with(base("Started"), func(n *webhooks.Notification) {
				n.FromImages = []string{"app:v1", "sidecar:1.0"}
				n.ToImages = []string{"app:v2", "sidecar:1.0"}
			}),
			want:   []string{"*From*\n`app:v1`, `sidecar:1.0`", "*To*\n`app:v2`, `sidecar:1.0`"},
			inText: []string{"app:v1, sidecar:1.0 → app:v2, sidecar:1.0"},
		},
		{
			name: "a promotion gives the duration, the steps taken and the final checks' figures",
			n: with(base("Promoted"), func(n *webhooks.Notification) {
				n.Step, n.Weight, n.DurationSeconds = 2, 50, 252
				n.Checks = []analysis.Check{passingRate, passingP99}
			}),
			want: []string{"Promoted: checkout", "*Took*\n4m12s", "*Steps*\n3/3", "*Now running*\n`registry.example/shop/checkout:v2`",
				"Final checks", "success-rate* 0.9987 (threshold >= 0.99, 5120 samples)",
				"latency-p99* 212.5 (threshold <= 500, 5120 samples)"},
			inText: []string{"Promoted shop/checkout to registry.example/shop/checkout:v2 in 4m12s (3/3 steps)"},
			absent: []string{"pass", "0.99874"},
		},
		{
			name: "a blue/green switch says what now serves, what is kept, and the preview's checks",
			n: with(base("Switched"), func(n *webhooks.Notification) {
				n.Plan, n.Step, n.Weight = []int32{0, 100}, 1, 100
				n.Reason = "preview (x-fledge-preview: true): all 2 checks passed; switched: all traffic on revision 7f9c4d"
				n.Checks = []analysis.Check{passingRate}
			}),
			want: []string{"Switched: checkout", "*Now serving*\n`registry.example/shop/checkout:v2`", "*Kept at full size*\n`registry.example/shop/checkout:v1`",
				"Preview checks", "success-rate* 0.9987", "switched: all traffic on revision 7f9c4d"},
			inText: []string{"Switched shop/checkout to registry.example/shop/checkout:v2; registry.example/shop/checkout:v1 kept at full size"},
		},
		{
			name: "a revert after a promotion says what regressed and what serves again",
			n: with(base("Reverted"), func(n *webhooks.Notification) {
				n.Step, n.Weight = -1, 100
				n.Reason = "r2 regressed after its promotion: error-rate: r2 5% over 1000 requests in the last 10s vs r1 0.5% before it"
			}),
			want: []string{"Reverted after promotion: checkout", "*Regressed*\n`registry.example/shop/checkout:v2`", "*Back on*\n`registry.example/shop/checkout:v1`",
				"r2 regressed after its promotion"},
			inText: []string{"Reverted shop/checkout after its promotion: r2 regressed after its promotion"},
			absent: []string{"before traffic"},
		},
		{
			name: "a promotion made early by a person shows the steps it skipped",
			n: with(base("Promoted"), func(n *webhooks.Notification) {
				n.Step, n.DurationSeconds = 0, 3725
			}),
			want:   []string{"*Steps*\n1/3", "*Took*\n1h2m5s"},
			absent: []string{"Final checks"},
		},
		{
			name: "a rollback gives the reason, the failing check's figures, the step and weight",
			n: with(base("RolledBack"), func(n *webhooks.Notification) {
				n.Step, n.Weight = 1, 25
				n.Reason = "success-rate 0.912346 is below the minimum of 0.99"
				n.Checks = []analysis.Check{failingRate}
			}),
			want: []string{"Rolled back: checkout", "*Why:* success-rate 0.912346 is below the minimum of 0.99",
				"*When*\nstep 2/3 (25%)", "*Rejected*\n`registry.example/shop/checkout:v2`", "*Back on*\n`registry.example/shop/checkout:v1`",
				"success-rate* 0.9123 (threshold >= 0.99, 1834 samples) — fail: 0.912346 is below the minimum of 0.99"},
			inText: []string{"Rolled back shop/checkout at step 2/3 (25%): success-rate 0.912346 is below the minimum of 0.99"},
			absent: []string{"Aborted", `"metric"`, `"outcome"`},
		},
		{
			name: "a rollback without a reason takes the first failing check's",
			n: with(base("RolledBack"), func(n *webhooks.Notification) {
				n.Step, n.Weight = 0, 10
				n.Checks = []analysis.Check{passingRate, failingP99}
			}),
			want:   []string{"*Why:* latency-p99 1235 (threshold <= 500, 1834 samples) — fail", "step 1/3 (10%)"},
			inText: []string{"at step 1/3 (10%): latency-p99 1235"},
		},
		{
			name: "an abort through the API names who and how",
			n: with(base("Aborted"), func(n *webhooks.Notification) {
				n.Step, n.Weight = 1, 25
				n.Reason = "aborted by alice: checkout errors in EU"
				n.By = "api:alice"
			}),
			want:   []string{"Aborted: checkout", "*Aborted*\nby alice via api", "*Why:* aborted by alice: checkout errors in EU", "*When*\nstep 2/3 (25%)"},
			inText: []string{"Aborted shop/checkout at step 2/3 (25%) by alice via api: aborted by alice"},
			absent: []string{"Rolled back"},
		},
		{
			name: "an abort by annotation names the interface",
			n: with(base("Aborted"), func(n *webhooks.Notification) {
				n.Step, n.Reason, n.By = -1, "aborted by annotation", "annotation"
			}),
			want:   []string{"*Aborted*\nvia annotation", "*When*\nbefore traffic"},
			inText: []string{"Aborted shop/checkout before traffic via annotation: aborted by annotation"},
		},
		{
			name: "a hold for want of data says it cannot measure, and why",
			n: with(base("Held"), func(n *webhooks.Notification) {
				n.Step, n.Weight = 0, 10
				n.HoldReason = "NotEnoughData"
				n.Reason = "3 requests served by the canary in the last 1m, fewer than the 100 required"
				n.Checks = []analysis.Check{starved}
			}),
			want: []string{"Held: checkout", "*NotEnoughData*: cannot measure: not enough data",
				"3 requests served by the canary in the last 1m", "*Where*\nstep 1/3 (10%)",
				"success-rate* no value (threshold >= 0.99, 3 samples) — not-enough-data"},
			inText: []string{"shop/checkout is held at step 1/3 (10%), NotEnoughData: 3 requests"},
		},
		{
			name: "a hold on a gate says it waits on the gate",
			n: with(base("Held"), func(n *webhooks.Notification) {
				n.Step, n.Weight = 2, 50
				n.HoldReason, n.Reason = "WaitingForGate", "confirm-promotion hook qa-signoff answered 403"
			}),
			want: []string{"*WaitingForGate*: waiting on a gate", "confirm-promotion hook qa-signoff answered 403"},
		},
		{
			name: "a hold with an unknown code still shows the code",
			n: with(base("Held"), func(n *webhooks.Notification) {
				n.HoldReason, n.Reason = "SomethingNew", "a reason"
			}),
			want: []string{"*SomethingNew*\na reason"},
		},
		{
			name:   "an unknown event is told generically, with its reason",
			n:      with(base("Resumed"), func(n *webhooks.Notification) { n.Reason = "resumed by bob"; n.Weight = 10 }),
			want:   []string{"Resumed: checkout", "resumed by bob", "*Where*\nstep 1/3 (10%)", "*Canary*\n`registry.example/shop/checkout:v2`"},
			inText: []string{"Resumed shop/checkout: resumed by bob"},
		},
		{
			name:   "an empty notification still makes a message",
			n:      webhooks.Notification{},
			want:   []string{"Update: none"},
			inText: []string{"Update none: none"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			text, blocks := Blocks(tt.n)
			shown := rendered(t, blocks)
			plain := unescape(text)
			for _, w := range tt.want {
				if !strings.Contains(shown, w) {
					t.Errorf("blocks do not show %q; they read:\n%s", w, shown)
				}
			}
			for _, w := range tt.inText {
				if !strings.Contains(plain, w) {
					t.Errorf("fallback text %q does not say %q", plain, w)
				}
			}
			for _, a := range tt.absent {
				if strings.Contains(shown, a) || strings.Contains(plain, a) {
					t.Errorf("message shows %q, which it should not; blocks:\n%s\ntext: %s", a, shown, plain)
				}
			}
			if err := withinLimits(blocks); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestBlocksEscapeWhatPeopleWrote(t *testing.T) {
	n := with(base("Aborted"), func(n *webhooks.Notification) {
		n.Reason = "<!channel> see <https://evil.example|the fix> & more"
		n.By = "api:<@U123>"
	})
	text, blocks := Blocks(n)
	raw, err := json.Marshal(blocks)
	if err != nil {
		t.Fatal(err)
	}
	// JSON escapes < and > as \u003c and \u003e: decode before looking.
	var decoded any
	if err := json.Unmarshal(raw, &decoded); err != nil {
		t.Fatal(err)
	}
	all := text + "\n" + strings.Join(strings.Split(rendered(t, blocks), "\n"), " ")
	for _, s := range []string{text, mustString(t, decoded)} {
		for _, bad := range []string{"<!channel>", "<https://evil", "<@U123>"} {
			if strings.Contains(s, bad) {
				t.Errorf("message passes %q to Slack unescaped:\n%s", bad, s)
			}
		}
	}
	if !strings.Contains(all, "<!channel> see") || !strings.Contains(all, "& more") {
		t.Errorf("escaping lost the words themselves:\n%s", all)
	}
}

func TestBlocksKeepWithinBlockKitLimits(t *testing.T) {
	long := strings.Repeat("é<&>", 2000)
	checks := make([]analysis.Check, 40)
	for i := range checks {
		checks[i] = failingRate
		checks[i].Message = long
	}
	images := make([]string, 200)
	for i := range images {
		images[i] = "registry.example/a/very/long/path/to/an/image-name:" + strings.Repeat("v", 40)
	}
	huge := func(event string) webhooks.Notification {
		return webhooks.Notification{
			Event: event + strings.Repeat("x", 200), Name: strings.Repeat("n", 300), Namespace: long,
			Revision: long, FromImages: images, ToImages: images, Plan: make([]int32, 300),
			Reason: long, HoldReason: long, By: long, Checks: checks, DurationSeconds: 1 << 40,
		}
	}
	for _, event := range []string{"Started", "Promoted", "RolledBack", "Aborted", "Held", "Switched", "Reverted", "Other"} {
		t.Run(event+" with oversized facts", func(t *testing.T) {
			n := huge(event)
			if event != "Other" {
				n.Event = event
			}
			text, blocks := Blocks(n)
			if err := withinLimits(blocks); err != nil {
				t.Error(err)
			}
			if c := len([]rune(text)); c > maxFallback {
				t.Errorf("fallback text is %d characters, over %d", c, maxFallback)
			}
			if strings.HasSuffix(text, "&") || strings.HasSuffix(text, "&am") {
				t.Errorf("fallback text ends in a cut entity: %q", text[len(text)-10:])
			}
		})
	}
	t.Run("many checks are counted, not dropped silently", func(t *testing.T) {
		n := base("RolledBack")
		n.Checks = make([]analysis.Check, 12)
		for i := range n.Checks {
			n.Checks[i] = passingP99
		}
		_, blocks := Blocks(n)
		if shown := rendered(t, blocks); !strings.Contains(shown, "…and 4 more") {
			t.Errorf("12 checks, 8 shown: want \"…and 4 more\", got:\n%s", shown)
		}
	})
}

// withinLimits checks what Slack would refuse a message for.
func withinLimits(blocks []slack.Block) error {
	if len(blocks) > 50 {
		return errors.New("more than 50 blocks")
	}
	var errs []error
	text := func(where string, o *slack.TextBlockObject, limit int) {
		switch {
		case o == nil:
			return
		case o.Text == "":
			errs = append(errs, errors.New(where+": empty text"))
		case len([]rune(o.Text)) > limit:
			errs = append(errs, errors.New(where+": text over the limit"))
		}
	}
	for _, b := range blocks {
		switch b := b.(type) {
		case *slack.HeaderBlock:
			text("header", b.Text, 150)
		case *slack.SectionBlock:
			text("section", b.Text, 3000)
			if len(b.Fields) > 10 {
				errs = append(errs, errors.New("section: more than 10 fields"))
			}
			for _, f := range b.Fields {
				text("field", f, 2000)
			}
		case *slack.ContextBlock:
			for _, e := range b.ContextElements.Elements {
				if o, ok := e.(*slack.TextBlockObject); ok {
					text("context", o, 3000)
				}
			}
		default:
			errs = append(errs, errors.New("unexpected block type "+string(b.BlockType())))
		}
	}
	return errors.Join(errs...)
}

// rendered flattens blocks to the text Slack shows: every "text" string
// in document order, with mrkdwn's entities undone.
func rendered(t *testing.T, blocks []slack.Block) string {
	t.Helper()
	raw, err := json.Marshal(blocks)
	if err != nil {
		t.Fatalf("marshal blocks: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	var out []string
	var stack []bool // true: in an object
	key, expectKey := "", false
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("walk blocks JSON: %v", err)
		}
		if d, ok := tok.(json.Delim); ok {
			if d == '{' || d == '[' {
				stack = append(stack, d == '{')
				expectKey = d == '{'
				continue
			}
			stack = stack[:len(stack)-1]
		} else if s, ok := tok.(string); ok && expectKey {
			key, expectKey = s, false
			continue
		} else if ok && key == "text" {
			out = append(out, s)
		}
		expectKey = len(stack) > 0 && stack[len(stack)-1]
	}
	return unescape(strings.Join(out, "\n"))
}

func unescape(s string) string {
	return strings.NewReplacer("&lt;", "<", "&gt;", ">", "&amp;", "&").Replace(s)
}

func mustString(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	// Undo JSON's HTML escaping only, not mrkdwn's.
	return strings.NewReplacer(`\u003c`, "<", `\u003e`, ">", `\u0026`, "&").Replace(string(b))
}
