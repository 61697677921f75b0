package cli

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"

	"github.com/fledgehq/fledge/rollout/rolloutpb"
)

// Output formats (-o).
const (
	formatText = "text"
	formatJSON = "json"
	formatYAML = "yaml"
)

func validFormat(f string) error {
	switch f {
	case formatText, formatJSON, formatYAML:
		return nil
	}
	return fmt.Errorf("-o %q: want text, json or yaml", f)
}

// printMessage prints a message as JSON or YAML. With stream set, JSON
// is one object per line and YAML one document per event.
func printMessage(w io.Writer, format string, m proto.Message, stream bool) error {
	opts := protojson.MarshalOptions{} // one line (Indent would imply several)
	if format == formatJSON && !stream {
		opts.Indent = "  "
	}
	b, err := opts.Marshal(m)
	if err != nil {
		return err
	}
	if format == formatYAML {
		if b, err = yaml.JSONToYAML(b); err != nil {
			return err
		}
		if stream {
			b = append([]byte("---\n"), b...)
		}
		_, err = w.Write(b)
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// phase is a Phase as the Flight resource writes it: "RolledBack".
func phase(p rolloutpb.Phase) string {
	if p == rolloutpb.Phase_PHASE_UNSPECIFIED {
		return "Unknown"
	}
	return camel(strings.TrimPrefix(p.String(), "PHASE_"))
}

// camel turns UPPER_SNAKE into CamelCase.
func camel(s string) string {
	var b strings.Builder
	for word := range strings.SplitSeq(strings.ToLower(s), "_") {
		if word != "" {
			b.WriteString(strings.ToUpper(word[:1]) + word[1:])
		}
	}
	return b.String()
}

func verdict(v rolloutpb.Verdict) string {
	return strings.ToLower(strings.TrimPrefix(v.String(), "VERDICT_"))
}

func outcome(o rolloutpb.Outcome) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(o.String(), "OUTCOME_")), "_", "-")
}

// bar draws a weight in percent as ten cells: [####------].
func bar(weight int32) string {
	filled := int(min(max(weight, 0), 100)) / 10
	return "[" + strings.Repeat("#", filled) + strings.Repeat("-", 10-filled) + "]"
}

// step is "i/n", counting from 1; 0/n while the canary starts, and "-"
// when no revision is in flight.
func step(f *rolloutpb.Flight) string {
	n := len(f.GetSteps())
	switch f.GetPhase() {
	case rolloutpb.Phase_PHASE_PROGRESSING, rolloutpb.Phase_PHASE_PAUSED, rolloutpb.Phase_PHASE_PROMOTING:
	default:
		n = 0
	}
	if n == 0 {
		return "-"
	}
	return fmt.Sprintf("%d/%d", min(int(f.GetStep())+1, n), n)
}

// progress is "step 2/4 [####------] 40%" ("+ baseline 40%" when a fresh
// baseline serves as much beside it), "step 1/4 cohort beta" during a
// cohort stage, or 0% with its share withdrawn while no canary pod is
// ready.
func progress(f *rolloutpb.Flight) string {
	if p := f.GetMirrorPercent(); p > 0 && cohort(f) != "" {
		if f.GetMirrorCompared() {
			return fmt.Sprintf("step %s mirror %d%%, answers compared with stable's (users on stable)", step(f), p)
		}
		return fmt.Sprintf("step %s mirror %d%% (users on stable)", step(f), p)
	}
	if f.GetStrategy() == "blueGreen" {
		switch {
		case cohort(f) != "":
			return fmt.Sprintf("step %s blue/green preview", step(f))
		case f.GetStep() == 1 && (f.GetPhase() == rolloutpb.Phase_PHASE_PROGRESSING || f.GetPhase() == rolloutpb.Phase_PHASE_PAUSED):
			return fmt.Sprintf("step %s blue/green switched, previous revision kept", step(f))
		}
	}
	if f.GetCanaryWithdrawn() {
		return fmt.Sprintf("step %s %s 0%%, its share withdrawn until a canary pod is ready", step(f), bar(0))
	}
	if c := cohort(f); c != "" {
		return fmt.Sprintf("step %s cohort %s", step(f), c)
	}
	out := fmt.Sprintf("step %s %s %d%%", step(f), bar(f.GetCanaryWeight()), f.GetCanaryWeight())
	if w := f.GetCanaryWeight(); f.GetBaseline() == "fresh" && w > 0 && 2*w <= 100 && step(f) != "-" && f.GetPhase() != rolloutpb.Phase_PHASE_PROMOTING {
		out += fmt.Sprintf(" + baseline %d%%", w)
	}
	return out
}

// cohort names the cohort stage a Flight is in, if it is in one.
func cohort(f *rolloutpb.Flight) string {
	switch f.GetPhase() {
	case rolloutpb.Phase_PHASE_PROGRESSING, rolloutpb.Phase_PHASE_PAUSED:
		if i := int(f.GetStep()); i >= 0 && i < len(f.GetCohorts()) {
			return f.GetCohorts()[i]
		}
	}
	return ""
}

func holdText(h *rolloutpb.Hold) string {
	if h.GetReason() == "" {
		return ""
	}
	if h.GetMessage() == "" {
		return h.GetReason()
	}
	return h.GetReason() + ": " + h.GetMessage()
}

// checkText is one check: "success-rate 0.998 (>= 0.99, 1200 samples) pass",
// or a judged comparison's line (comparisonText).
func checkText(c *rolloutpb.Check) string {
	if c.GetCompared() != nil {
		return comparisonText(c)
	}
	value := "-"
	if c.Value != nil {
		value = strconv.FormatFloat(c.GetValue(), 'g', 4, 64)
	}
	s := fmt.Sprintf("%s %s (%s, %d samples) %s", c.GetMetric(), value, c.GetThreshold(), c.GetSamples(), outcome(c.GetOutcome()))
	if c.GetMessage() != "" {
		s += ": " + c.GetMessage()
	}
	return s
}

// watchLine is one line of the live view.
func watchLine(now time.Time, ev *rolloutpb.WatchEvent) string {
	f := ev.GetFlight()
	prefix := now.Format("15:04:05") + " " + f.GetNamespace() + "/" + f.GetName()
	if ev.GetType() == rolloutpb.WatchEvent_TYPE_DELETED {
		return prefix + " deleted"
	}
	s := prefix + " " + phase(f.GetPhase()) + " " + progress(f)
	if h := holdText(f.GetHold()); h != "" {
		s += " | hold " + h
	}
	if checks := f.GetLastDecision().GetChecks(); len(checks) > 0 {
		texts := make([]string, len(checks))
		for i, c := range checks {
			texts[i] = checkText(c)
		}
		s += " | checks " + strings.Join(texts, ", ")
	}
	return s
}

// printStatus prints a Flight for people.
func printStatus(w io.Writer, f *rolloutpb.Flight) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	line := func(k, format string, args ...any) {
		fmt.Fprintf(tw, "%s:\t"+format+"\n", append([]any{k}, args...)...)
	}
	line("Flight", "%s/%s", f.GetNamespace(), f.GetName())
	line("Policy", "%s (host %s)", f.GetPolicy(), orDash(f.GetHost()))
	line("Phase", "%s", phase(f.GetPhase()))
	if f.GetPromotionStage() != rolloutpb.PromotionStage_PROMOTION_STAGE_UNSPECIFIED {
		line("Promotion", "%s", camel(strings.TrimPrefix(f.GetPromotionStage().String(), "PROMOTION_STAGE_")))
	}
	line("Progress", "%s", progress(f))
	line("Stable", "%s %s", orDash(f.GetStableRevision()), images(f.GetStableImages()))
	line("Canary", "%s %s", orDash(f.GetCanaryRevision()), images(f.GetCanaryImages()))
	if f.GetRejectedRevision() != "" {
		line("Rejected", "%s", f.GetRejectedRevision())
	}
	if f.GetFailedChecks() > 0 {
		line("Failed checks", "%d", f.GetFailedChecks())
	}
	if h := f.GetHold(); h != nil {
		line("Hold", "%s (since %s)", holdText(h), when(h.GetSince().AsTime()))
	}
	if wa := f.GetWatch(); wa != nil {
		s := fmt.Sprintf("%s of %s (previous %s)", wa.GetState(), wa.GetRevision(), wa.GetPrevious())
		if wa.GetState() == "Watching" && wa.GetUntil() != nil {
			s += " until " + when(wa.GetUntil().AsTime())
		}
		if wa.GetMessage() != "" {
			s += ": " + wa.GetMessage()
		}
		line("Watch", "%s", s)
	}
	if f.GetMessage() != "" {
		line("Message", "%s", f.GetMessage())
	}
	if a := f.GetLastAction(); a != nil {
		line("Last action", "%s", actionText(a))
	}
	for _, fl := range f.GetFlags() {
		s := fmt.Sprintf("%s: %s (%s)", fl.GetFlag(), orDash(fl.GetServing()), orDash(fl.GetState()))
		if fl.GetMessage() != "" {
			s += ": " + fl.GetMessage()
		}
		line("Flag", "%s", s)
	}
	if d := f.GetLastDecision(); d != nil {
		line("Last decision", "%s", decisionText(d))
		for _, c := range d.GetChecks() {
			fmt.Fprintf(tw, "\t  %s\n", checkText(c))
		}
	}
	return tw.Flush()
}

func actionText(a *rolloutpb.Action) string {
	kind := strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(a.GetKind().String(), "ACTION_KIND_")), "_", "-")
	s := kind + " by " + orDash(a.GetBy())
	if a.GetAt() != nil {
		s += " at " + when(a.GetAt().AsTime())
	}
	if a.GetReason() != "" {
		s += ": " + a.GetReason()
	}
	return s
}

func decisionText(d *rolloutpb.Decision) string {
	return fmt.Sprintf("%s %s %s at %d%%: %s", when(d.GetAt().AsTime()), orDash(d.GetRevision()), verdict(d.GetVerdict()), d.GetWeight(), d.GetMessage())
}

func images(imgs []*rolloutpb.ContainerImage) string {
	refs := make([]string, 0, len(imgs))
	for _, i := range imgs {
		if i.GetContainer() != "" {
			refs = append(refs, i.GetContainer()+"="+i.GetImage())
		} else {
			refs = append(refs, i.GetImage())
		}
	}
	return strings.Join(refs, ", ")
}

func when(t time.Time) string {
	if t.IsZero() || t.Unix() == 0 {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// printList prints Flights as a table.
func printList(w io.Writer, flights []*rolloutpb.Flight) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tPHASE\tSTEP\tWEIGHT\tCANARY\tSTABLE\tHOLD")
	for _, f := range flights {
		weight := fmt.Sprintf("%d%%", f.GetCanaryWeight())
		if f.GetCanaryWithdrawn() {
			weight = "0% (withdrawn)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", f.GetName(), phase(f.GetPhase()), step(f), weight,
			orDash(f.GetCanaryRevision()), orDash(f.GetStableRevision()), orDash(f.GetHold().GetReason()))
	}
	return tw.Flush()
}

// printExplain prints the decision log for people.
func printExplain(w io.Writer, resp *rolloutpb.ExplainResponse) error {
	f := resp.GetFlight()
	fmt.Fprintf(w, "%s/%s: %s, %s\n", f.GetNamespace(), f.GetName(), phase(f.GetPhase()), progress(f))
	if len(resp.GetDecisions()) == 0 {
		fmt.Fprintln(w, "no decisions recorded")
	}
	for _, d := range resp.GetDecisions() {
		fmt.Fprintf(w, "%s  %s  step %d  %d%%  %s  %s\n", when(d.GetAt().AsTime()), orDash(d.GetRevision()), d.GetStep()+1, d.GetWeight(), verdict(d.GetVerdict()), d.GetMessage())
		if n := d.GetRepeats(); n > 0 {
			fmt.Fprintf(w, "    the same %d rounds in all, since %s\n", n+1, when(d.GetSince().AsTime()))
		}
		for _, fl := range d.GetFlags() {
			fmt.Fprintf(w, "    flag %s\n", fl)
		}
		for _, c := range d.GetChecks() {
			fmt.Fprintf(w, "    %s\n", checkText(c))
			if c.GetQuery() != "" {
				fmt.Fprintf(w, "      query: %s\n", c.GetQuery())
			}
		}
	}
	return nil
}
