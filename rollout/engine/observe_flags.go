package engine

import (
	"context"
	"fmt"
	"maps"
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fledgehq/fledge/flags"
	"github.com/fledgehq/fledge/flags/flagd"
	"github.com/fledgehq/fledge/rollout"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
)

// GateEvaluator evaluates a flag gate from a flag source (a ConfigMap key
// in fledge's namespace); flags.ConfigMapGates is the real one.
type GateEvaluator interface {
	Evaluate(ctx context.Context, configMap, key, flag string, rc flags.RolloutContext) flags.GateResult
}

// observeFlags reads the ConfigMap keys of the release flags the Flight
// has linked, and those the policy would link to a new revision. They are
// read from the API server, not a cache: a decision to write one must see
// its latest resourceVersion, and fledge is only granted access to them
// in the namespaces that opted in (no cluster-wide ConfigMap watch).
func (c *Controller) observeFlags(ctx context.Context, ns string, p *rollout.Policy, st *v1alpha1.FlightStatus) map[string]rollout.FlagDoc {
	keys := map[string][2]string{}
	for _, f := range st.Flags {
		keys[rollout.FlagDocKey(f.ConfigMap, f.Key)] = [2]string{f.ConfigMap, f.Key}
	}
	for _, rf := range p.ReleaseFlags {
		keys[rollout.FlagDocKey(rf.ConfigMap, rf.Key)] = [2]string{rf.ConfigMap, rf.Key}
	}
	if len(keys) == 0 {
		return nil
	}
	out := make(map[string]rollout.FlagDoc, len(keys))
	for k, ck := range keys {
		name, key := ck[0], ck[1]
		where := fmt.Sprintf("configmap %s/%s", ns, name)
		cm, err := c.kube.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			out[k] = rollout.FlagDoc{Err: where + ": not found"}
			continue
		case apierrors.IsForbidden(err):
			out[k] = rollout.FlagDoc{Err: where + ": fledge may not read it: bind the ClusterRole fledge-release-flags to fledge's ServiceAccount in namespace " + ns}
			continue
		case err != nil:
			out[k] = rollout.FlagDoc{Err: where + ": " + err.Error()}
			continue
		}
		doc, ok := cm.Data[key]
		if !ok {
			out[k] = rollout.FlagDoc{Err: fmt.Sprintf("%s: data.%s: not found", where, key), ResourceVersion: cm.ResourceVersion}
			continue
		}
		fd := rollout.FlagDoc{Doc: doc, ResourceVersion: cm.ResourceVersion}
		if err := flagd.Validate([]byte(doc)); err != nil {
			fd.Err = fmt.Sprintf("%s: data.%s: %v", where, key, err)
		}
		out[k] = fd
	}
	return out
}

// flagsInUse lists the release flags that other Flights of the namespace
// are stepping and this one must leave to them. Of two in-flight Flights
// linking a flag, the one that has set it keeps it; if neither or both
// have, the one whose revision started first.
//
// Only the Flights that link a flag document this one links or would
// link are read, from an index: a Flight without release flags reads
// none, and one with them does not scan its namespace.
func (c *Controller) flagsInUse(f *v1alpha1.Flight, p *rollout.Policy) map[string]string {
	docs := map[string]bool{}
	for _, fl := range f.Status.Flags {
		docs[f.Namespace+"/"+rollout.FlagDocKey(fl.ConfigMap, fl.Key)] = true
	}
	if p != nil {
		for _, rf := range p.ReleaseFlags {
			docs[f.Namespace+"/"+rollout.FlagDocKey(rf.ConfigMap, rf.Key)] = true
		}
	}
	if len(docs) == 0 {
		return nil
	}
	sc := c.scopes.of(f.Namespace)
	if sc == nil || sc.flightIndex == nil {
		return nil
	}
	var list []*v1alpha1.Flight
	seen := map[string]bool{}
	for _, doc := range slices.Sorted(maps.Keys(docs)) {
		objs, err := sc.flightIndex.ByIndex(flagDocIndex, doc)
		if err != nil {
			return nil
		}
		for _, obj := range objs {
			if other, ok := obj.(*v1alpha1.Flight); ok && !seen[other.Name] {
				seen[other.Name] = true
				list = append(list, other)
			}
		}
	}
	mine := map[string]bool{} // flags this Flight has set in its revision in flight
	if !f.Status.Phase.Terminal() {
		for _, fl := range f.Status.Flags {
			if fl.Applied != "" {
				mine[rollout.FlagID(fl.ConfigMap, fl.Key, fl.Flag)] = true
			}
		}
	}
	var out map[string]string
	for _, other := range list { // read only: the cache is never mutated
		if other.Name == f.Name {
			continue
		}
		if other.Status.Phase.Terminal() || other.Status.Phase == v1alpha1.PhaseInitializing || len(other.Status.Flags) == 0 {
			continue
		}
		for _, fl := range other.Status.Flags {
			if fl.State == v1alpha1.FlagLeftAlone || fl.State == v1alpha1.FlagInUse {
				continue
			}
			id := rollout.FlagID(fl.ConfigMap, fl.Key, fl.Flag)
			theirs := fl.Applied != ""
			otherKeeps := theirs && !mine[id] || theirs == mine[id] && startedFirst(other, f)
			if !f.Status.Phase.Terminal() && !otherKeeps {
				continue
			}
			if out == nil {
				out = map[string]string{}
			}
			out[id] = other.Namespace + "/" + other.Name
		}
	}
	return out
}

// startedFirst reports whether a's revision started before b's. Start
// times are kept to the second, so a tie goes to the name that sorts
// first: the two Flights must agree on which one waits.
func startedFirst(a, b *v1alpha1.Flight) bool {
	ta, tb := a.Status.RevisionStartedAt, b.Status.RevisionStartedAt
	switch {
	case ta == nil || tb == nil:
		return tb == nil && ta != nil
	case !ta.Equal(tb):
		return ta.Before(tb)
	}
	return a.Name < b.Name
}

// evaluateGates asks the policy's flag gates about the Flight as it
// stands, while a revision is in flight.
func (c *Controller) evaluateGates(ctx context.Context, d *appsv1.Deployment, p *rollout.Policy, st *v1alpha1.FlightStatus) []flags.GateResult {
	if len(p.FlagGates) == 0 || st.Phase != v1alpha1.PhaseProgressing && st.Phase != v1alpha1.PhasePaused {
		return nil
	}
	rc := flags.RolloutContext{
		App: d.Name, Namespace: d.Namespace, Policy: p.Name, Revision: st.CanaryRevision,
		Images: rollout.ImageRefs(st.CanaryImages), Step: int(st.Step) + 1, Weight: int(st.CanaryWeight), NextWeight: 100,
	}
	next := int(st.Step) + 1
	if next < len(st.Steps) {
		rc.NextWeight = int(st.Steps[next])
	} else {
		rc.Promotion = true
	}
	if c := rollout.CohortOf(st); c != nil {
		rc.Cohort = c.Name
	}
	out := make([]flags.GateResult, 0, len(p.FlagGates))
	for _, flag := range p.FlagGates {
		if c.gates == nil || p.FlagSource == nil {
			out = append(out, flags.GateResult{Flag: flag, Verdict: flags.Unreadable, Reason: "fledge runs without a flag source"})
			continue
		}
		out = append(out, c.gates.Evaluate(ctx, p.FlagSource.ConfigMap, p.FlagSource.Key, flag, rc))
	}
	return out
}
