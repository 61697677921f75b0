package rollout

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
)

// Config changes, canaried like template changes. A revision is the
// Deployment's template and the content of the ConfigMaps and Secrets its
// pods read (volumes, projected volumes, env, envFrom), unless an object
// opts out (annotation fledge.dev/config: ignore). fledge never renames,
// copies into or writes the user's objects, nor the Deployment's template:
//
//   - it keeps copies of the content of the revisions it needs (stable's,
//     the canary's, a watch's previous revision's): ConfigMaps and Secrets
//     named "<deployment>-<name>-<hash>", owned by the Flight, immutable, made while
//     the content is there to copy (stable's at the take-over, and as soon
//     as a revision is canaried) and deleted once no revision reads them;
//   - the canary's pods read the copies of the new content;
//   - Kubernetes delivers a changed object to the Deployment's own pods by
//     itself (mounted files within the kubelet's sync, environment
//     variables when a container starts): from the change on they are not
//     stable any more. Stable's share is served by "<name>-previous",
//     stable's template on the copies of stable's content ("pinned"), and
//     the canary is judged against those pods; its first share waits until
//     they are ready;
//   - a promotion restarts the Deployment's pods made before the change
//     (by eviction, while the canary serves everyone), so they read the
//     new content, and then routes to them; a rollback keeps stable's
//     share on the pinned pods until the change is reverted (the
//     Deployment's pods are then restarted on stable's content) or a fix
//     arrives (canaried against them).

// Config kinds (ConfigItem.Kind).
const (
	ConfigKindConfigMap = "configmap"
	ConfigKindSecret    = "secret"
)

// WithConfig is the revision of a template (its TemplateHash) whose pods
// read the config content items: the template's hash alone without any.
func WithConfig(template string, items []v1alpha1.ConfigItem) string {
	if len(items) == 0 {
		return template
	}
	return template + "-" + itemsHash(items)
}

// TemplateOf is the template part of a revision (its TemplateHash).
func TemplateOf(revision string) string {
	t, _, _ := strings.Cut(revision, "-")
	return t
}

// configPart is the config part of a revision, "" without one.
func configPart(revision string) string {
	_, c, _ := strings.Cut(revision, "-")
	return c
}

func itemsHash(items []v1alpha1.ConfigItem) string {
	h := sha256.New()
	for _, it := range items {
		fmt.Fprintf(h, "%s/%s=%s\n", it.Kind, it.Name, it.Hash)
	}
	return hex.EncodeToString(h.Sum(nil))[:10]
}

// CopyName names Flight flight's copy of a config item:
// "<flight>-<name>-<hash>" (per Flight: two Deployments reading one
// ConfigMap each keep their own copies), shortened to an object name's
// 253 characters.
func CopyName(flight string, it v1alpha1.ConfigItem) string {
	name := flight + "-" + it.Name
	if n := 253 - len(it.Hash) - 1; len(name) > n {
		name = strings.TrimRight(name[:n], ".-")
	}
	return name + "-" + it.Hash
}

// SortConfig sorts items by kind and name (the order of a revision's).
func SortConfig(items []v1alpha1.ConfigItem) {
	slices.SortFunc(items, func(a, b v1alpha1.ConfigItem) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Name, b.Name))
	})
}

// SameConfig reports whether two sorted lists of items are the same
// content.
func SameConfig(a, b []v1alpha1.ConfigItem) bool { return slices.Equal(a, b) }

// ContentOf is the config content of revision as st records it.
func ContentOf(st *v1alpha1.FlightStatus, revision string) ([]v1alpha1.ConfigItem, bool) {
	if configPart(revision) == "" {
		return nil, true
	}
	if st.Config == nil {
		return nil, false
	}
	for _, c := range st.Config.Contents {
		if c.Revision == revision {
			return c.Items, true
		}
	}
	return nil, false
}

// DeploymentConfig is the content the Deployment's pods read, as far as
// fledge can tell: the newest it saw once none of them is older than it
// (stale is how many are), stable's otherwise; at the take-over (no
// record yet) what the template reads now.
func DeploymentConfig(st *v1alpha1.FlightStatus, desired []v1alpha1.ConfigItem, stale int32) []v1alpha1.ConfigItem {
	c := st.Config
	if c == nil {
		return desired
	}
	if stale == 0 {
		return c.Seen
	}
	if items, ok := ContentOf(st, st.StableRevision); ok {
		return items
	}
	return c.Seen
}

// CopiesWanted are the names of the copies of every revision Flight flight
// keeps content of, by kind ("configmap/<copy>").
func CopiesWanted(flight string, st *v1alpha1.FlightStatus) map[string]bool {
	out := map[string]bool{}
	if st.Config == nil {
		return out
	}
	for _, c := range st.Config.Contents {
		for _, it := range c.Items {
			out[it.Kind+"/"+CopyName(flight, it)] = true
		}
	}
	return out
}

// trackConfig, before deciding, records the newest config content seen
// (and when), takes a Flight that did not track config yet over, and pins
// stable's share when the content changed.
func (d *decider) trackConfig() {
	items := d.in.DesiredConfig
	c := d.st.Config
	if c == nil {
		if len(items) == 0 || d.in.ConfigProblem != "" {
			return
		}
		// The first content seen: the Deployment's pods read it (a Flight
		// from before config was tracked counts its stable revision as
		// that content's).
		c = &v1alpha1.ConfigStatus{Seen: slices.Clone(items)}
		d.st.Config = c
		// Every revision the Flight names reads it too: the template's
		// hash alone would not be the same revision any more.
		for _, rev := range []*string{&d.st.StableRevision, &d.st.CanaryRevision, &d.st.RejectedRevision} {
			if *rev != "" && configPart(*rev) == "" {
				*rev = WithConfig(*rev, items)
			}
		}
		if w := d.st.Watch; w != nil {
			for _, rev := range []*string{&w.Revision, &w.Previous} {
				if *rev != "" && configPart(*rev) == "" {
					*rev = WithConfig(*rev, items)
				}
			}
		}
		return
	}
	if d.in.ConfigProblem == "" && !SameConfig(items, c.Seen) {
		now := d.now()
		c.Seen, c.SeenAt = slices.Clone(items), &now
	}
	d.keepContents()
	if !c.Pinned && d.pinWanted() {
		now := d.now()
		c.Pinned, c.PinnedSince, c.Routed, c.Restarting = true, &now, false, false
		if d.st.Baseline == BaselineFresh {
			// The pinned pods take the baseline's place.
			d.st.Baseline = ""
		}
	}
}

// pinWanted reports whether the content seen is not stable's, so that the
// Deployment's pods are not stable's any more and stable's share needs
// pinned pods: unless a watch's revert already serves it from the
// previous revision's pods, or stable's content is lost.
func (d *decider) pinWanted() bool {
	c := d.st.Config
	if c == nil || d.st.StableRevision == "" {
		return false
	}
	if s := d.watchState(); s == v1alpha1.WatchReverted || s == v1alpha1.WatchRestoring {
		return false
	}
	stable, ok := ContentOf(&d.st, d.st.StableRevision)
	if !ok {
		return false
	}
	for _, l := range d.in.LostCopies {
		if slices.Contains(stable, l) {
			return false
		}
	}
	// Only a change of what stable's pods read: a new template that
	// reads another object (or stops reading one) leaves them as they
	// are.
	for _, it := range stable {
		i := slices.IndexFunc(c.Seen, func(s v1alpha1.ConfigItem) bool { return s.Kind == it.Kind && s.Name == it.Name })
		if i >= 0 && c.Seen[i].Hash != it.Hash {
			return true
		}
	}
	return false
}

// keepContents keeps the content of the revisions fledge needs: stable's,
// the canary's while it runs, a watch's previous revision's. A revision
// met for the first time reads the content seen (or the template's now).
func (d *decider) keepContents() {
	c := d.st.Config
	need := []string{d.st.StableRevision}
	if !d.st.Phase.Terminal() {
		need = append(need, d.st.CanaryRevision)
	}
	if w := d.st.Watch; w != nil {
		switch w.State {
		case v1alpha1.WatchPreparing, v1alpha1.WatchWatching, v1alpha1.WatchReverted, v1alpha1.WatchRestoring:
			need = append(need, w.Previous)
		}
	}
	var out []v1alpha1.ConfigRevision
	for _, rev := range need {
		if configPart(rev) == "" || slices.ContainsFunc(out, func(r v1alpha1.ConfigRevision) bool { return r.Revision == rev }) {
			continue
		}
		if i := slices.IndexFunc(c.Contents, func(r v1alpha1.ConfigRevision) bool { return r.Revision == rev }); i >= 0 {
			out = append(out, c.Contents[i])
			continue
		}
		switch configPart(rev) {
		case itemsHash(c.Seen):
			out = append(out, v1alpha1.ConfigRevision{Revision: rev, Items: slices.Clone(c.Seen)})
		case itemsHash(d.in.DesiredConfig):
			out = append(out, v1alpha1.ConfigRevision{Revision: rev, Items: slices.Clone(d.in.DesiredConfig)})
		}
	}
	c.Contents = out
}

// configPinned reports whether stable's share is on the pinned pods: a
// pin stands and they are ready, or were routed to and any of them is
// still available.
func (d *decider) configPinned() bool {
	c := d.st.Config
	if c == nil || !c.Pinned {
		return false
	}
	// (Of stable's revision: once a promotion makes another revision
	// stable, the pinned pods are the old one's and serve nobody.)
	return d.in.PreviousRevision == d.st.StableRevision && (d.in.PreviousReady || c.Routed && d.in.PreviousAvailable > 0)
}

// pinReady reports whether a canary may take its first share: without a
// pin, or with stable's share on the pinned pods.
func (d *decider) pinReady() bool {
	c := d.st.Config
	return c == nil || !c.Pinned || d.configPinned()
}

// keepConfig, after deciding, asks for what the config content needs: the
// copies of every kept revision's content, the pinned pods while a pin
// stands, and, once the content is stable's again, the Deployment's pods
// restarted on it and the pin lifted.
func (d *decider) keepConfig() {
	c := d.st.Config
	if c == nil || d.in.OptedOut {
		return
	}
	d.keepContents()
	wanted := CopiesWanted(d.in.Name, &d.st)
	var missing []v1alpha1.ConfigItem
	for _, it := range d.in.MissingCopies {
		if wanted[it.Kind+"/"+CopyName(d.in.Name, it)] && !slices.Contains(d.in.LostCopies, it) {
			missing = append(missing, it)
		}
	}
	// A revision kept from this decision on was not observed: its copies
	// are asked for too (a copy that exists is left as it is).
	var before []v1alpha1.ConfigRevision
	if d.in.Status.Config != nil {
		before = d.in.Status.Config.Contents
	}
	for _, cr := range c.Contents {
		if slices.ContainsFunc(before, func(b v1alpha1.ConfigRevision) bool { return b.Revision == cr.Revision }) {
			continue
		}
		for _, it := range cr.Items {
			if !slices.Contains(missing, it) && !slices.Contains(d.in.LostCopies, it) {
				missing = append(missing, it)
			}
		}
	}
	if len(missing) > 0 {
		// First: the pods about to be made read them.
		d.actions = append([]Action{EnsureConfigCopies{Items: missing}}, d.actions...)
	}
	var stray []string
	for _, name := range d.in.StrayCopies {
		if !wanted[name] {
			stray = append(stray, name)
		}
	}
	if len(stray) > 0 {
		d.do(DeleteConfigCopies{Names: stray})
	}
	if !c.Pinned {
		c.Message = d.configNote("")
		return
	}
	if !d.pinWanted() {
		d.unpin()
		return
	}
	stable, _ := ContentOf(&d.st, d.st.StableRevision)
	n := d.in.StableReplicas
	if d.in.PreviousReady && !c.Routed && d.in.PreviousRevision == d.st.StableRevision {
		c.Routed = true
		d.reroute()
	}
	if !d.in.PreviousExists || !d.in.PreviousReady || d.in.PreviousRevision != d.st.StableRevision || n > 0 && d.in.PreviousReplicas < n {
		d.do(EnsurePrevious{Revision: d.st.StableRevision, Replicas: n, Config: stable})
	}
	state := fmt.Sprintf("stable's share is served by %s%s (stable's template on fledge's copies of stable's config)", d.in.Name, previousSuffix)
	if !d.configPinned() {
		state = fmt.Sprintf("stable's pods on stable's config (%s%s) are starting%s; meanwhile the Deployment's pods serve stable's share", d.in.Name, previousSuffix, trouble(d.in.PreviousTrouble))
		if d.st.Phase.Terminal() && d.in.Now.Sub(c.PinnedSince.Time) >= d.in.Policy.ProgressDeadline {
			// At rest, the Deployment's pods serve everyone, reading
			// content that was not promoted: said loudly, once.
			d.holdAtRest(v1alpha1.HoldStableStalled, fmt.Sprintf("stable's pods on stable's config (%s%s) are not ready after %s%s: the Deployment's pods, which read config that was not promoted (%s), serve everyone until they are, or until the config is reverted",
				d.in.Name, previousSuffix, d.in.Policy.ProgressDeadline, trouble(d.in.PreviousTrouble), changedItems(stable, c.Seen)))
		}
		d.after(2 * time.Second)
	}
	c.Message = d.configNote(fmt.Sprintf("the config the Deployment's pods read changed since %s (%s): %s, until the change is promoted, reverted or fixed",
		c.PinnedSince.UTC().Format(time.TimeOnly), changedItems(stable, c.Seen), state))
}

// reroute sets the routing the Flight wants now, with stable's share
// moved onto the pinned pods (or back).
func (d *decider) reroute() {
	for _, a := range d.actions {
		if _, ok := a.(SetWeights); ok {
			return
		}
	}
	switch {
	case d.st.Phase.Terminal(), d.st.Phase == v1alpha1.PhaseRollingBack:
		d.do(SetWeights{Weights: d.rest()})
	default:
		d.do(SetWeights{Weights: d.routing(d.st.CanaryWeight)})
	}
}

// unpin lifts a pin once the content seen is stable's (promoted, or the
// change reverted): the Deployment's pods made before the content was seen
// are restarted first, so that none reads another, and stable's share
// goes back to them once they are all up.
func (d *decider) unpin() {
	c := d.st.Config
	// The pods were counted against the content seen before this
	// decision: if it changed (the revert itself), they are counted again.
	counted := d.in.Status.Config != nil && d.in.Status.Config.SeenAt.Equal(c.SeenAt)
	if d.in.StalePods > 0 || !d.in.DeploymentSettled || !counted {
		c.Restarting = true
		if d.in.StalePods > 0 && c.SeenAt != nil {
			d.do(RestartStalePods{Before: *c.SeenAt})
		}
		c.Message = d.configNote(fmt.Sprintf("the config is stable's again: the Deployment's pods are restarted on it (%d yet to run it since %s); stable's share stays on %s%s until they are up",
			d.in.StalePods, seenAt(c), d.in.Name, previousSuffix))
		if c.SeenAt != nil && d.in.Now.Sub(c.SeenAt.Time) >= d.in.Policy.ProgressDeadline && d.st.Phase.Terminal() {
			d.holdAtRest(v1alpha1.HoldStableStalled, fmt.Sprintf("the Deployment's pods are not all restarted on stable's config after %s (%d yet to run it: a PodDisruptionBudget refusing evictions, or pods that do not become ready?); stable's share stays on %s%s until they are",
				d.in.Policy.ProgressDeadline, d.in.StalePods, d.in.Name, previousSuffix))
		}
		d.after(2 * time.Second)
		return
	}
	c.Pinned, c.PinnedSince, c.Routed, c.Restarting = false, nil, false, false
	c.Message = d.configNote("")
	if h := d.st.Hold; h != nil && h.Reason == v1alpha1.HoldStableStalled && d.st.Phase.Terminal() {
		d.st.Hold = nil
	}
	d.record(v1alpha1.VerdictHold, "the Deployment's pods read stable's config: stable's share is back on them", nil)
	d.reroute()
	d.after(time.Second)
}

func seenAt(c *v1alpha1.ConfigStatus) string {
	if c.SeenAt == nil {
		return "the take-over"
	}
	return c.SeenAt.UTC().Format(time.TimeOnly)
}

// configNote joins what the Flight says of its config: msg, and what
// fledge cannot track or lost.
func (d *decider) configNote(msg string) string {
	var parts []string
	if msg != "" {
		parts = append(parts, msg)
	}
	if d.in.ConfigProblem != "" {
		parts = append(parts, d.in.ConfigProblem)
	}
	if d.in.ConfigNote != "" {
		parts = append(parts, d.in.ConfigNote)
	}
	if len(d.in.LostCopies) > 0 {
		parts = append(parts, fmt.Sprintf("the content of %s changed before fledge copied it: a change of it is canaried against the Deployment's pods, which read the new content", itemList(d.in.LostCopies)))
	}
	return strings.Join(parts, "; ")
}

// changedItems names the objects whose content differs between a and b.
func changedItems(a, b []v1alpha1.ConfigItem) string {
	var out []string
	for _, it := range b {
		if !slices.Contains(a, it) {
			out = append(out, it.Kind+" "+it.Name)
		}
	}
	for _, it := range a {
		if !slices.ContainsFunc(b, func(x v1alpha1.ConfigItem) bool { return x.Kind == it.Kind && x.Name == it.Name }) {
			out = append(out, it.Kind+" "+it.Name+" (no longer read)")
		}
	}
	if len(out) == 0 {
		return "no object"
	}
	return strings.Join(out, ", ")
}

func itemList(items []v1alpha1.ConfigItem) string {
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.Kind + " " + it.Name
	}
	return strings.Join(out, ", ")
}

// holdAtRest holds a Flight at rest, said loudly once: a Flight at rest
// drops its hold at every decision (steady), so the one it had is kept.
func (d *decider) holdAtRest(reason, msg string) {
	if prev := d.in.Status.Hold; prev != nil && prev.Reason == reason && d.st.Hold == nil {
		h := *prev
		d.st.Hold = &h
	}
	d.hold(reason, msg)
}
