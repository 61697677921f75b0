package slack

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/fledgehq/fledge/analysis"
)

// Block Kit's limits, in characters (runes). Slack rejects a whole message
// whose one block is over, so every text that carries user or policy
// input is cut to fit rather than trusted to be short.
const (
	maxHeader   = 150
	maxSection  = 3000
	maxField    = 2000
	maxFallback = 3000
	// maxChecks is how many checks a message lists; the rest are counted.
	maxChecks = 8
	// maxCheckLine bounds one check's line, so a long message of one check
	// cannot push the others out of the section.
	maxCheckLine = 360
)

// escaper escapes the three characters Slack gives meaning to in mrkdwn
// and message text. Without it a reason could ping the channel
// ("<!channel>") or forge a link.
var escaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// esc escapes s for mrkdwn and cuts it to at most limit runes, counted
// after escaping (Slack counts what it receives). A cut never splits an
// entity and ends with "…".
func esc(s string, limit int) string {
	if out := escaper.Replace(s); utf8.RuneCountInString(out) <= limit {
		return out
	}
	var b strings.Builder
	n := 0
	for _, r := range s {
		piece := escaper.Replace(string(r))
		w := utf8.RuneCountInString(piece)
		if n+w > limit-1 {
			break
		}
		b.WriteString(piece)
		n += w
	}
	return b.String() + "…"
}

// cut shortens plain text (not escaped: headers) to limit runes.
func cut(s string, limit int) string {
	if utf8.RuneCountInString(s) <= limit {
		return s
	}
	r := []rune(s)
	return string(r[:limit-1]) + "…"
}

// number matches the numbers in a threshold (">= 0.99 and <= 1").
var number = regexp.MustCompile(`[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?`)

// formatValue writes a measured value compactly, with four significant
// digits (%.4g) but without an exponent below a billion (12345, not
// 1.234e+04: latencies in milliseconds read better whole). When rounding
// would make a failing value read like its bound ("0.99, threshold >=
// 0.99"), it adds digits until the two differ.
func formatValue(v float64, threshold string) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return strconv.FormatFloat(v, 'g', -1, 64)
	}
	bounds := number.FindAllString(threshold, -1)
	for prec := 4; prec <= 17; prec++ {
		s := compact(v, prec)
		if !readsAsBound(s, v, bounds) {
			return s
		}
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

func compact(v float64, prec int) string {
	if a := math.Abs(v); a >= 1e4 && a < 1e9 && prec <= 9 {
		return strconv.FormatFloat(math.Round(v), 'f', 0, 64)
	}
	return strconv.FormatFloat(v, 'g', prec, 64)
}

// readsAsBound reports whether s, the rounded v, equals a bound that v is
// not.
func readsAsBound(s string, v float64, bounds []string) bool {
	sv, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return false
	}
	for _, b := range bounds {
		bv, err := strconv.ParseFloat(b, 64)
		if err == nil && bv == sv && bv != v {
			return true
		}
	}
	return false
}

// formatDuration writes whole seconds as people do: "4m12s", "2h", "1d3h".
func formatDuration(seconds int64) string {
	if seconds <= 0 {
		return "0s"
	}
	d := time.Duration(seconds) * time.Second
	units := []struct {
		size time.Duration
		name string
	}{{24 * time.Hour, "d"}, {time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}}
	var b strings.Builder
	for _, u := range units {
		if n := d / u.size; n > 0 {
			fmt.Fprintf(&b, "%d%s", n, u.name)
			d -= n * u.size
		}
	}
	return b.String()
}

// formatPlan writes the planned weights as the policy reads:
// "10% → 25% → 50% → promote".
//
// The first len(cohorts) steps are cohort stages, named: "beta → 10% → ...".
func formatPlan(plan []int32, cohorts ...string) string {
	parts := make([]string, 0, len(plan)+1)
	for i, w := range plan {
		if i < len(cohorts) {
			parts = append(parts, "cohort "+cohorts[i])
			continue
		}
		parts = append(parts, fmt.Sprintf("%d%%", w))
	}
	return strings.Join(append(parts, "promote"), " → ")
}

// atStep is formatStep for a sentence: "at step 2/3 (25%)", "before
// traffic".
func atStep(step int32, plan []int32, weight int32, cohorts ...string) string {
	if step < 0 {
		return formatStep(step, plan, weight, cohorts...)
	}
	return "at " + formatStep(step, plan, weight, cohorts...)
}

// formatStep says where a rollout stood, 1-based for people: "step 2/3
// (25%)". The total is known only when the notification carries the plan.
func formatStep(step int32, plan []int32, weight int32, cohorts ...string) string {
	if step < 0 {
		return "before traffic"
	}
	s := fmt.Sprintf("step %d", step+1)
	if int(step) < len(plan) {
		s = fmt.Sprintf("step %d/%d", step+1, len(plan))
	}
	if int(step) < len(cohorts) {
		return fmt.Sprintf("%s (cohort %s)", s, cohorts[step])
	}
	return fmt.Sprintf("%s (%d%%)", s, weight)
}

// formatImages lists images as inline code, in container order, within
// a field's limit.
func formatImages(images []string, limit int) string {
	if len(images) == 0 {
		return "unknown"
	}
	parts := make([]string, len(images))
	for i, img := range images {
		parts[i] = "`" + esc(strings.ReplaceAll(img, "`", "'"), maxField/4) + "`"
	}
	return joinWithin(parts, ", ", limit)
}

// joinWithin joins escaped parts if they fit in limit runes; otherwise as
// many as fit, then how many were left out.
func joinWithin(parts []string, sep string, limit int) string {
	for k := len(parts); k >= 0; k-- {
		s := strings.Join(parts[:k], sep)
		if k < len(parts) {
			if k > 0 {
				s += sep
			}
			s += fmt.Sprintf("…and %d more", len(parts)-k)
		}
		if utf8.RuneCountInString(s) <= limit {
			return s
		}
	}
	return ""
}

// plainImages lists images for the fallback text.
func plainImages(images []string) string {
	if len(images) == 0 {
		return "unknown"
	}
	return strings.Join(images, ", ")
}

// formatBy says who acted and through which interface: "api:alice" is
// "by alice via api"; "annotation", which does not say who, is "via
// annotation".
func formatBy(by string) string {
	if by == "" {
		return "by someone unknown"
	}
	if iface, who, ok := strings.Cut(by, ":"); ok && who != "" {
		return "by " + who + " via " + iface
	}
	return "via " + by
}

// formatCheck writes one check's facts after its metric's name: "0.9123
// (threshold >= 0.99, 1234 samples)", with the outcome and its message
// when it is not a pass; a judged comparison's is formatComparison's.
func formatCheck(c analysis.Check) string {
	if c.Compared != nil {
		return formatComparison(c)
	}
	value := "no value"
	if c.Value != nil {
		value = formatValue(*c.Value, c.Threshold)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s (threshold %s, %d samples)", value, orNone(c.Threshold), c.Samples)
	if c.Outcome != "" && c.Outcome != analysis.Pass {
		fmt.Fprintf(&b, " — %s", c.Outcome)
		if c.Message != "" {
			fmt.Fprintf(&b, ": %s", c.Message)
		}
	}
	return b.String()
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// holdMeanings gloss the hold codes rollout writes, so that a person
// reading Slack need not know them.
var holdMeanings = map[string]string{
	"NotEnoughData":        "cannot measure: not enough data",
	"AnalysisError":        "cannot measure: the analysis failed",
	"Inconclusive":         "cannot tell yet: the checks are inconclusive",
	"WaitingForGate":       "waiting on a gate",
	"CanaryNotReady":       "waiting for the canary to be ready",
	"Paused":               "paused by a person",
	"RoutingError":         "cannot shift traffic",
	"WaitingForDeployment": "waiting for the Deployment to roll out",
	"StableRolloutStalled": "the stable Deployment's rollout is stalled",
}

// slackDate renders t in each reader's time zone, with a UTC fallback for
// clients that cannot.
func slackDate(t time.Time) string {
	return fmt.Sprintf("<!date^%d^{date_short_pretty} at {time}|%s>", t.Unix(), t.UTC().Format("2006-01-02 15:04 UTC"))
}
