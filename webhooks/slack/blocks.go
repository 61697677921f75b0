package slack

import (
	"fmt"
	"strings"

	"github.com/slack-go/slack"

	"github.com/fledgehq/fledge/analysis"
	"github.com/fledgehq/fledge/webhooks"
)

// The events rollout notifies about (Notification.Event).
const (
	eventStarted    = "Started"
	eventPromoted   = "Promoted"
	eventRolledBack = "RolledBack"
	eventAborted    = "Aborted"
	eventHeld       = "Held"
	eventSwitched   = "Switched"
	eventReverted   = "Reverted"
)

// Blocks lays a notification out as Slack shows it: a fallback text line
// (what notifications and old clients show) and Block Kit blocks. It is
// pure, so that what people read is tested without a Slack.
//
// Every value that comes from a policy, a person or the cluster is
// escaped (a reason cannot ping the channel or forge a link) and cut to
// Block Kit's limits (one oversized block makes Slack refuse the whole
// message, and a notification nobody receives explains nothing).
func Blocks(n webhooks.Notification) (text string, blocks []slack.Block) {
	var l layout
	switch n.Event {
	case eventStarted:
		l = started(n)
	case eventPromoted:
		l = promoted(n)
	case eventRolledBack, eventAborted:
		l = rejected(n)
	case eventHeld:
		l = held(n)
	case eventSwitched:
		l = switched(n)
	case eventReverted:
		l = reverted(n)
	default:
		l = other(n)
	}
	return l.render(n)
}

// layout is one message before rendering: every string but fallback is
// mrkdwn, already escaped.
type layout struct {
	emoji, title string
	summary      string
	fields       []string
	checksTitle  string
	checks       []analysis.Check
	fallback     string // plain: escaped at render
}

func started(n webhooks.Notification) layout {
	plan := formatPlan(n.Plan, n.Cohorts...)
	return layout{
		emoji: ":rocket:", title: "Rollout started",
		fields: append(where(n),
			imagesField("From", n.FromImages),
			imagesField("To", n.ToImages),
			field("Plan", plan),
		),
		fallback: fmt.Sprintf("Rollout of %s started: %s → %s, plan %s",
			app(n), plainImages(n.FromImages), plainImages(n.ToImages), plan),
	}
}

func promoted(n webhooks.Notification) layout {
	steps := stepsTaken(n.Step, n.Plan)
	l := layout{
		emoji: ":white_check_mark:", title: "Promoted",
		fields: append(where(n),
			imagesField("Now running", n.ToImages),
			imagesField("Was running", n.FromImages),
			field("Steps", steps),
		),
		checksTitle: "Final checks",
		checks:      n.Checks,
		fallback:    fmt.Sprintf("Promoted %s to %s", app(n), plainImages(n.ToImages)),
	}
	if n.DurationSeconds > 0 {
		took := formatDuration(n.DurationSeconds)
		l.fields = append(l.fields, field("Took", took))
		l.fallback += " in " + took
	}
	l.fallback += " (" + steps + " steps)"
	return l
}

// switched lays out a blue/green switch: every request now reaches the new
// revision, and the previous one is kept at full size while it is judged.
func switched(n webhooks.Notification) layout {
	l := layout{
		emoji: ":twisted_rightwards_arrows:", title: "Switched",
		fields: append(where(n),
			imagesField("Now serving", n.ToImages),
			imagesField("Kept at full size", n.FromImages),
		),
		checksTitle: "Preview checks",
		checks:      n.Checks,
		fallback:    fmt.Sprintf("Switched %s to %s; %s kept at full size", app(n), plainImages(n.ToImages), plainImages(n.FromImages)),
	}
	if n.Reason != "" {
		l.summary = esc(n.Reason, maxSection)
	}
	return l
}

// rejected lays out a rollback or an abort: both put the stable revision
// back, and people need the same facts, plus who acted for an abort.
func rejected(n webhooks.Notification) layout {
	reason := n.Reason
	if reason == "" {
		reason = firstFailure(n.Checks)
	}
	at := formatStep(n.Step, n.Plan, n.Weight, n.Cohorts...)
	l := layout{
		emoji: ":rotating_light:", title: "Rolled back",
		summary: "*Why:* " + esc(reason, maxSection-10),
		fields: append(where(n),
			field("When", at),
			imagesField("Rejected", n.ToImages),
			imagesField("Back on", n.FromImages),
		),
		checksTitle: "Checks",
		checks:      n.Checks,
		fallback:    fmt.Sprintf("Rolled back %s %s: %s", app(n), atStep(n.Step, n.Plan, n.Weight, n.Cohorts...), reason),
	}
	if n.Event == eventAborted {
		by := formatBy(n.By)
		l.emoji, l.title = ":octagonal_sign:", "Aborted"
		l.fields = append(l.fields, field("Aborted", by))
		l.fallback = fmt.Sprintf("Aborted %s %s %s: %s", app(n), atStep(n.Step, n.Plan, n.Weight, n.Cohorts...), by, reason)
	}
	return l
}

// reverted lays out a watch's revert: the promoted revision regressed
// after its promotion, and all traffic is back on the previous one's pods
// until the Deployment's template changes.
func reverted(n webhooks.Notification) layout {
	return layout{
		emoji: ":rotating_light:", title: "Reverted after promotion",
		summary: "*Why:* " + esc(n.Reason, maxSection-10),
		fields: append(where(n),
			imagesField("Regressed", n.ToImages),
			imagesField("Back on", n.FromImages),
		),
		checksTitle: "Checks",
		checks:      n.Checks,
		fallback:    fmt.Sprintf("Reverted %s after its promotion: %s", app(n), n.Reason),
	}
}

func held(n webhooks.Notification) layout {
	code := orNone(n.HoldReason)
	summary := "*" + esc(code, 100) + "*"
	if meaning, ok := holdMeanings[n.HoldReason]; ok {
		summary += ": " + meaning
	}
	if n.Reason != "" {
		summary += "\n" + esc(n.Reason, maxSection-300)
	}
	at := formatStep(n.Step, n.Plan, n.Weight, n.Cohorts...)
	return layout{
		emoji: ":hourglass_flowing_sand:", title: "Held",
		summary: summary,
		fields: append(where(n),
			field("Where", at),
			imagesField("Canary", n.ToImages),
		),
		checksTitle: "Checks",
		checks:      n.Checks,
		fallback:    fmt.Sprintf("%s is held %s, %s: %s", app(n), atStep(n.Step, n.Plan, n.Weight, n.Cohorts...), code, orNone(n.Reason)),
	}
}

// other lays out an event this package does not know yet, so that a new
// event in rollout is still told, if plainly.
func other(n webhooks.Notification) layout {
	event := n.Event
	if event == "" {
		event = "Update"
	}
	l := layout{
		emoji: ":information_source:", title: event,
		fields: append(where(n),
			field("Where", formatStep(n.Step, n.Plan, n.Weight, n.Cohorts...)),
		),
		checksTitle: "Checks",
		checks:      n.Checks,
		fallback:    fmt.Sprintf("%s %s: %s", event, app(n), orNone(n.Reason)),
	}
	if n.Reason != "" {
		l.summary = esc(n.Reason, maxSection)
	}
	if len(n.ToImages) > 0 {
		l.fields = append(l.fields, imagesField("Canary", n.ToImages))
	}
	return l
}

func (l layout) render(n webhooks.Notification) (string, []slack.Block) {
	header := cut(l.emoji+" "+l.title+": "+orNone(n.Name), maxHeader)
	blocks := []slack.Block{
		slack.NewHeaderBlock(slack.NewTextBlockObject(slack.PlainTextType, header, true, false)),
	}
	if l.summary != "" {
		blocks = append(blocks, section(l.summary))
	}
	if len(n.Flags) > 0 {
		lines := make([]string, len(n.Flags))
		for i, f := range n.Flags {
			lines[i] = esc(f, 200)
		}
		l.fields = append(l.fields, "*Flags*\n"+joinWithin(lines, "\n", maxField-len("*Flags*\n")))
	}
	if len(l.fields) > 0 {
		fs := make([]*slack.TextBlockObject, 0, len(l.fields))
		for _, f := range l.fields[:min(len(l.fields), 10)] { // Block Kit allows 10
			fs = append(fs, mrkdwn(f))
		}
		blocks = append(blocks, slack.NewSectionBlock(nil, fs, nil))
	}
	listed, compared := splitComparisons(l.checks)
	if len(listed) > 0 {
		blocks = append(blocks, section(checkList(l.checksTitle, listed)))
	}
	blocks = append(blocks, comparisonBlocks(compared)...)
	blocks = append(blocks, slack.NewContextBlock("", mrkdwn(smallPrint(n))))
	return esc(l.fallback, maxFallback), blocks
}

// checkList writes checks one a line, the first maxChecks of them and
// then how many more, within a section's limit.
func checkList(title string, checks []analysis.Check) string {
	head := "*" + title + "*\n"
	lines := make([]string, 0, min(len(checks), maxChecks)+1)
	for _, c := range checks[:min(len(checks), maxChecks)] {
		lines = append(lines, "• *"+esc(orNone(c.Metric), 64)+"* "+esc(formatCheck(c), maxCheckLine))
	}
	if extra := len(checks) - maxChecks; extra > 0 {
		lines = append(lines, fmt.Sprintf("…and %d more", extra))
	}
	return head + joinWithin(lines, "\n", maxSection-len(head))
}

// smallPrint is the message's small print: where, which revision, when.
func smallPrint(n webhooks.Notification) string {
	parts := []string{"fledge", esc(app(n), 300)}
	if n.Revision != "" {
		parts = append(parts, "revision `"+esc(n.Revision, 100)+"`")
	}
	if !n.At.IsZero() {
		parts = append(parts, slackDate(n.At))
	}
	return strings.Join(parts, " · ")
}

// where are the fields every message starts with.
func where(n webhooks.Notification) []string {
	return []string{
		field("App", orNone(n.Name)),
		field("Namespace", orNone(n.Namespace)),
	}
}

// app names the app as kubectl does: namespace/name.
func app(n webhooks.Notification) string {
	if n.Namespace == "" {
		return orNone(n.Name)
	}
	return n.Namespace + "/" + orNone(n.Name)
}

// stepsTaken counts the steps a promoted rollout went through: "3/3", or
// "2/3" when a person promoted it early.
func stepsTaken(step int32, plan []int32) string {
	taken := max(step+1, 0)
	if len(plan) > 0 {
		return fmt.Sprintf("%d/%d", taken, len(plan))
	}
	return fmt.Sprint(taken)
}

// firstFailure is the reason to give when a rollback names none.
func firstFailure(checks []analysis.Check) string {
	for _, c := range checks {
		if c.Outcome == analysis.Fail {
			return c.Metric + " " + formatCheck(c)
		}
	}
	return "no reason given"
}

// field is a section field: a bold label over its value, escaped and cut
// so that the whole fits.
func field(label, value string) string {
	head := "*" + label + "*\n"
	return head + esc(value, maxField-len(head))
}

// imagesField is a field listing images as code.
func imagesField(label string, images []string) string {
	head := "*" + label + "*\n"
	return head + formatImages(images, maxField-len(head))
}

func section(text string) *slack.SectionBlock {
	return slack.NewSectionBlock(mrkdwn(text), nil, nil)
}

// mrkdwn makes a verbatim mrkdwn text object: verbatim, so that Slack
// does not turn names in a reason into links or mentions.
func mrkdwn(text string) *slack.TextBlockObject {
	return slack.NewTextBlockObject(slack.MarkdownType, text, false, true)
}
