package engine

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"github.com/fledgehq/fledge/analysis"
	"github.com/fledgehq/fledge/rollout"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	"github.com/fledgehq/fledge/traffic"
)

// observe reads what Decide needs from the caches and the routing.
// p is the Flight's policy.
func (c *Controller) observe(ctx context.Context, d *appsv1.Deployment, t traffic.Target, st *v1alpha1.FlightStatus, p *rollout.Policy) rollout.Observed {
	fresh := p.Baseline == rollout.BaselineFresh
	o := rollout.Observed{
		DesiredRevision:   TemplateHash(d.Spec.Template),
		DeploymentPaused:  d.Spec.Paused,
		DeploymentSettled: DeploymentSettled(d),
		DeploymentCurrent: d.Status.ObservedGeneration >= d.Generation,
		// Pods not of its template, as its status counts them.
		DeploymentOffTemplate: d.Status.Replicas > d.Status.UpdatedReplicas,
		DesiredImages:         Images(d.Spec.Template),
	}
	// A revision is the template and the config content it reads.
	c.observeConfig(ctx, d, t, st, flagConfigMaps(p, st), &o)
	o.DesiredRevision = rollout.WithConfig(o.DesiredRevision, o.DesiredConfig)
	if sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector); err == nil {
		sets, _ := c.replicaSets.In(d.Namespace).List(sel)
		rs := NewestReplicaSet(d, sets)
		if rs != nil {
			o.DeploymentRevision = rollout.WithConfig(replicaSetTemplateHash(rs), rollout.DeploymentConfig(st, o.DesiredConfig, o.StalePods))
			o.StableImages = Images(rs.Spec.Template)
		}
		o.DeploymentOneRevision = oneRevision(d, rs, sets, rollout.TemplateOf(o.DesiredRevision))
		o.DeploymentMixed = mixed(d, rs, sets)
		if d.Spec.Paused && rs != nil && !o.DeploymentMixed && o.DeploymentCurrent && replicaSetSettled(d, rs) {
			// Paused with a template not rolled out yet, all its pods on
			// its newest ReplicaSet, available: it runs that revision,
			// settled (its status counts none of them updated, as they
			// are not of the template). So it is after someone deleted
			// its Flight mid-rollout (taken over afresh), or when a
			// team opts in a Deployment it paused itself.
			o.DeploymentSettled = true
		}
		if d.Spec.Paused && o.DeploymentOneRevision && replicasSettled(d) {
			// Paused, with all its replicas on its template's ReplicaSet,
			// the only one running: settled, even while the Deployment
			// controller has not yet observed the generation the pause
			// made (its observedGeneration lags for a moment). Waiting
			// for that was a Held warning and a status write more on
			// every take-over.
			o.DeploymentSettled = true
		}
		if rev := d.Annotations[deploymentRevision]; rev != "" && (rs == nil || rs.Annotations[deploymentRevision] != rev) {
			// The ReplicaSets' cache (a watch of its own) is behind the
			// Deployment's: what the Deployment runs is not known yet,
			// so it is not taken as rolled out (a take-over would record
			// an older revision as stable, or none, and canary what
			// stable runs).
			o.DeploymentSettled = false
			o.ReplicaSetsBehind = true
		}
	}
	// Unpaused once taken over, other than while promoted, and not as
	// fledge's own last write of spec.paused explains: someone else
	// resumed it.
	o.StableResumed = !d.Spec.Paused && st.Phase != "" && st.Phase != v1alpha1.PhaseInitializing && st.Phase != v1alpha1.PhasePromoting &&
		!c.exec.pauses.explains(d)
	// Only a canary this Flight made is its canary: a Deployment or
	// Service of the same name that is not is someone else's, and is
	// neither read as the canary nor ever changed.
	var ours *appsv1.Deployment // the canary, this Flight's
	if canary, err := c.deployments.In(d.Namespace).Get(d.Name + CanarySuffix); err == nil {
		if !ownedByRef(canary, t.Owner) {
			o.NameTaken = notOurs("deployment", canary)
		} else {
			ours = canary
			o.CanaryRevision = canary.Annotations[AnnotationRevision]
			if o.CanaryRevision == st.CanaryRevision && len(st.CanaryImages) > 0 {
				o.CanaryChanged = imagesChanged(Images(canary.Spec.Template), st.CanaryImages)
			}
			if canary.Spec.Replicas != nil {
				o.CanaryReplicas = *canary.Spec.Replicas
			}
			ready, available := c.ownReady(canary)
			o.CanaryReady, o.CanaryAvailable = o.CanaryReplicas > 0 && ready, available
			if o.CanaryChanged != "" {
				o.CanaryReady, o.CanaryAvailable = false, 0 // not the revision's pods, however ready
			}
			if !o.CanaryReady && o.CanaryRevision == o.DesiredRevision {
				o.CanaryTrouble = deploymentTrouble(canary)
			}
		}
	}
	svc, err := c.services.In(d.Namespace).Get(d.Name + CanarySuffix)
	if err == nil && o.NameTaken == "" && !ownedByRef(svc, t.Owner) {
		o.NameTaken = notOurs("service", svc)
	}
	if ours != nil && o.CanaryChanged == "" && o.CanaryRevision == st.CanaryRevision && inFlight(st) && (st.Step >= 0 || o.CanaryReady) {
		if apierrors.IsNotFound(err) {
			// Confirmed live: the cache may trail its creation (one
			// read, only when the cache has no such Service).
			svc, err = c.kube.CoreV1().Services(d.Namespace).Get(ctx, d.Name+CanarySuffix, metav1.GetOptions{})
		}
		o.CanaryChanged = canaryServiceChanged(ours, svc, err)
		if o.CanaryChanged != "" {
			o.CanaryReady, o.CanaryAvailable = false, 0 // the mesh cannot reach its pods
		}
	}
	c.observeAutoscalers(d, &o)
	c.observeBaseline(ctx, d, t, st, fresh, &o)
	c.observeComparator(d, t, &o)
	c.observePrevious(d, t, st, &o)
	w, err := c.router.Weights(ctx, t)
	if err != nil {
		o.RoutingError = err.Error()
	}
	o.Weights = w
	set := st.CanaryWeight
	if st.CanaryWithdrawn {
		set = 0
	}
	if namer, ok := c.router.(traffic.WriterNamer); ok && err == nil && st.Step >= 0 && w.Canary != set &&
		(st.Phase == v1alpha1.PhaseProgressing || st.Phase == v1alpha1.PhasePaused) {
		// Not as fledge set it: who else wrote it, for the hold to name.
		// (One read more, only while the routing drifts.)
		if who, err := namer.LastWriter(ctx, t); err == nil {
			o.RoutingWriter = who
		}
	}
	return o
}

// observeBaseline reads the fresh baseline's Deployment, if this Flight's.
// Its names are checked when the revision or the policy asks for one: a
// Deployment or Service of those names that is not this Flight's is a
// name taken, as the canary's would be.
func (c *Controller) observeBaseline(ctx context.Context, d *appsv1.Deployment, t traffic.Target, st *v1alpha1.FlightStatus, fresh bool, o *rollout.Observed) {
	wanted := fresh || st.Baseline == rollout.BaselineFresh
	name := d.Name + BaselineSuffix
	var ours *appsv1.Deployment // the baseline, this Flight's
	if b, err := c.deployments.In(d.Namespace).Get(name); err == nil {
		switch {
		case ownedByRef(b, t.Owner):
			ours = b
			o.BaselineExists = true
			o.BaselineRevision = b.Annotations[AnnotationRevision]
			if b.Spec.Replicas != nil {
				o.BaselineReplicas = *b.Spec.Replicas
			}
			ready, available := c.ownReady(b)
			o.BaselineReady, o.BaselineAvailable = o.BaselineReplicas > 0 && ready, available
			if !o.BaselineReady {
				o.BaselineTrouble = deploymentTrouble(b)
			}
		case wanted && o.NameTaken == "":
			o.NameTaken = notOurs("deployment", b)
		}
	}
	svc, err := c.services.In(d.Namespace).Get(name)
	if err == nil {
		switch {
		case ownedByRef(svc, t.Owner):
			o.BaselineExists = true // (a Service left by a delete half done goes too)
		case wanted && o.NameTaken == "":
			o.NameTaken = notOurs("service", svc)
		}
	}
	// Its Service is part of its readiness, as the canary's is.
	if ours != nil && st.Baseline == rollout.BaselineFresh && inFlight(st) && (st.Step >= 0 || o.BaselineReady) {
		if apierrors.IsNotFound(err) {
			svc, err = c.kube.CoreV1().Services(d.Namespace).Get(ctx, name, metav1.GetOptions{})
		}
		if changed := canaryServiceChanged(ours, svc, err); changed != "" {
			o.BaselineReady, o.BaselineAvailable, o.BaselineTrouble = false, 0, changed
		}
	}
}

// observePrevious reads the previous revision's pods kept through a
// watch, if this Flight's. Their names are checked while a watch wants
// them: a Deployment or Service of those names that is not this Flight's
// is a name taken.
func (c *Controller) observePrevious(d *appsv1.Deployment, t traffic.Target, st *v1alpha1.FlightStatus, o *rollout.Observed) {
	w := st.Watch
	wanted := w != nil && (w.State == v1alpha1.WatchPreparing || w.State == v1alpha1.WatchWatching || w.State == v1alpha1.WatchReverted || w.State == v1alpha1.WatchRestoring) ||
		st.Config != nil && st.Config.Pinned
	name := d.Name + PreviousSuffix
	if p, err := c.deployments.In(d.Namespace).Get(name); err == nil {
		switch {
		case ownedByRef(p, t.Owner):
			o.PreviousExists = true
			o.PreviousRevision = p.Annotations[AnnotationRevision]
			o.PreviousReplicas = ptr.Deref(p.Spec.Replicas, 1)
			ready, available := c.ownReady(p)
			o.PreviousReady, o.PreviousAvailable = o.PreviousReplicas > 0 && ready, available
			if !o.PreviousReady {
				o.PreviousTrouble = deploymentTrouble(p)
			}
		case wanted && o.NameTaken == "":
			o.NameTaken = notOurs("deployment", p)
		}
	}
	if svc, err := c.services.In(d.Namespace).Get(name); err == nil {
		switch {
		case ownedByRef(svc, t.Owner):
			o.PreviousExists = true
		case wanted && o.NameTaken == "":
			o.NameTaken = notOurs("service", svc)
		}
	}
}

// observeComparator reads the mirror stage's comparator, if this
// Flight's. (A Deployment or Service of its name that is not fledge's
// fails its creation as a conflict, which holds the rollout naming it:
// conflicts.record.)
func (c *Controller) observeComparator(d *appsv1.Deployment, t traffic.Target, o *rollout.Observed) {
	if svc, err := c.services.In(d.Namespace).Get(d.Name + ComparatorSuffix); err == nil && ownedByRef(svc, t.Owner) {
		o.ComparatorExists = true // (a Service left by a delete half done goes too)
	}
	cmp, err := c.deployments.In(d.Namespace).Get(d.Name + ComparatorSuffix)
	if err != nil || !ownedByRef(cmp, t.Owner) {
		return
	}
	o.ComparatorExists = true
	ready, _ := c.ownReady(cmp)
	o.ComparatorReady = ptr.Deref(cmp.Spec.Replicas, 1) > 0 && ready
	if !o.ComparatorReady {
		o.ComparatorTrouble = deploymentTrouble(cmp)
	}
}

// oneRevision reports whether Deployment d runs its own template alone:
// its newest ReplicaSet newest is of that template and of the Deployment's
// revision (the ReplicaSets' cache has caught up), and no other of its
// ReplicaSets has replicas. Without any ReplicaSet it does not: paused
// before its controller made the first one, it would never make it.
func oneRevision(d *appsv1.Deployment, newest *appsv1.ReplicaSet, sets []*appsv1.ReplicaSet, desired string) bool {
	if newest == nil || replicaSetTemplateHash(newest) != desired || newest.Annotations[deploymentRevision] != d.Annotations[deploymentRevision] {
		return false
	}
	for _, rs := range sets {
		if rs != newest && metav1.IsControlledBy(rs, d) && (rs.Spec.Replicas == nil || *rs.Spec.Replicas > 0) {
			return false
		}
	}
	return true
}

// mixed reports whether a ReplicaSet of d other than its newest has (or is
// to have) pods.
func mixed(d *appsv1.Deployment, newest *appsv1.ReplicaSet, sets []*appsv1.ReplicaSet) bool {
	for _, rs := range sets {
		if rs != newest && metav1.IsControlledBy(rs, d) && (rs.Spec.Replicas == nil || *rs.Spec.Replicas > 0 || rs.Status.Replicas > 0) {
			return true
		}
	}
	return false
}

// replicaSetSettled reports whether rs has d's replicas, all available.
func replicaSetSettled(d *appsv1.Deployment, rs *appsv1.ReplicaSet) bool {
	want := ptr.Deref(d.Spec.Replicas, 1)
	return ptr.Deref(rs.Spec.Replicas, 1) == want && rs.Status.Replicas == want && rs.Status.AvailableReplicas == want &&
		rs.Status.ObservedGeneration >= rs.Generation
}

// imagesChanged says how the images a canary runs differ from its
// revision's, or "" when they do not.
func imagesChanged(runs, want []v1alpha1.ContainerImage) string {
	if slices.Equal(runs, want) {
		return ""
	}
	return fmt.Sprintf("someone changed its images to %s, not its revision's %s (fledge puts them back)", strings.Join(rollout.ImageRefs(runs), ", "), strings.Join(rollout.ImageRefs(want), ", "))
}

// inFlight reports whether a Flight's canary has, or is to have, a share
// of traffic: a revision under way, or its promotion.
func inFlight(st *v1alpha1.FlightStatus) bool {
	switch st.Phase {
	case v1alpha1.PhaseProgressing, v1alpha1.PhasePaused, v1alpha1.PhasePromoting:
		return true
	}
	return false
}

// canaryServiceChanged says how the canary's Service (svc, as read with
// err) does not reach the canary's pods: missing (deleted, or its create
// failed while the Deployment's went through), or its selector changed.
// The mesh would answer the canary's share with 503s (no such host, or no
// endpoint) or send it to other pods, neither counted as the canary's. It
// is checked once the canary serves, or its pods are ready to (not while
// they come up: its Deployment and Service are made at once, and the
// cache may see either first), and a Service missing from the cache is
// read live first.
func canaryServiceChanged(canary *appsv1.Deployment, svc *corev1.Service, err error) string {
	want := canary.Spec.Selector.MatchLabels
	switch {
	case apierrors.IsNotFound(err):
		return fmt.Sprintf("its Service %s/%s is missing, so the mesh cannot reach its pods (fledge makes it again)", canary.Namespace, canary.Name)
	case err == nil && !maps.Equal(svc.Spec.Selector, want):
		return fmt.Sprintf("someone changed the selector of its Service %s/%s to %s, not its pods' %s (fledge puts it back)",
			svc.Namespace, svc.Name, labels.FormatLabels(svc.Spec.Selector), labels.FormatLabels(want))
	}
	return ""
}

func (c *Controller) stableService(ns, name string) *corev1.Service {
	s, err := c.services.In(ns).Get(name)
	if err != nil {
		return nil
	}
	return s
}

// previewHost is a blue/green revision's preview host, if it has one: a
// Service fledge makes with the canary.
func previewHost(st *v1alpha1.FlightStatus) string {
	if st.BlueGreen != nil && len(st.Cohorts) > 0 {
		return st.Cohorts[0].Host
	}
	return ""
}

// targetOf is the routing target of Flight f. Its baseline and comparator
// Services are named only while f's status (or one of also, a decision's
// next) has them: a team's destination that happens to bear such a name is
// never read as fledge's, nor removed.
func targetOf(f *v1alpha1.Flight, also ...*v1alpha1.FlightStatus) traffic.Target {
	t := traffic.Target{
		Namespace: f.Namespace, Name: f.Name, Host: f.Spec.Host, Stable: f.Spec.StableService,
		Canary: f.Name + CanarySuffix, VirtualService: f.Spec.VirtualService, Route: f.Spec.Route,
	}
	watched := false
	freshStored := f.Status.Baseline == rollout.BaselineFresh
	for i, st := range append([]*v1alpha1.FlightStatus{&f.Status}, also...) {
		if st.Baseline == rollout.BaselineFresh {
			t.Baseline = f.Name + BaselineSuffix
		}
		if w := st.Watch; w != nil && (w.State == v1alpha1.WatchWatching || w.State == v1alpha1.WatchReverted || w.State == v1alpha1.WatchRestoring) {
			watched = true
		}
		if c := st.Config; c != nil && c.Pinned && (i == 0 || !freshStored) {
			// Stable's pods pinned to its config: the same slot. (Not in
			// the decision that starts a pin while a fresh baseline
			// serves: its routing, all on stable, is written with the
			// baseline's name, so that a team's route, which has it, is
			// read and rewritten; the next decision takes the slot.)
			watched = true
		}
		if len(st.Cohorts) > 0 && st.Cohorts[0].Mirror > 0 && st.Cohorts[0].Compared {
			t.Comparator = f.Name + ComparatorSuffix
		}
	}
	if watched {
		// The previous revision's pods, kept through a watch, take the
		// baseline's place in the routing, whichever status (stored or
		// decided) wants them: all traffic goes to them on a regression,
		// and a revision canaried meanwhile gets no fresh baseline.
		t.Baseline = f.Name + PreviousSuffix
	}
	if f.UID != "" {
		t.Owner = metav1.NewControllerRef(f, v1alpha1.FlightResource.GroupVersion().WithKind("Flight"))
	}
	return t
}

// availableOfTemplate is how many of a Deployment's pods are available
// and of its template: all its available pods when every pod is of its
// template (no template half rolled), none otherwise.
func availableOfTemplate(d *appsv1.Deployment) int32 {
	if d.Status.UpdatedReplicas != d.Status.Replicas {
		return 0
	}
	return d.Status.AvailableReplicas
}

// ownSuffixes are the names fledge gives its own Deployments beside an
// app's.
var ownSuffixes = []string{CanarySuffix, BaselineSuffix, ComparatorSuffix, PreviousSuffix}

// observeAutoscalers reads the Deployment's size and the autoscalers that
// set it, and any autoscaler that targets one of fledge's own Deployments
// for it.
func (c *Controller) observeAutoscalers(d *appsv1.Deployment, o *rollout.Observed) {
	o.StableReplicas = ptr.Deref(d.Spec.Replicas, 1)
	sc := c.scopes.of(d.Namespace)
	if sc == nil {
		return
	}
	var names []string
	for _, obj := range byIndex(sc.autoscalers, d.Namespace+"/"+d.Name) {
		names = append(names, obj.Name)
		o.AutoscalerMax = max(o.AutoscalerMax, obj.Spec.MaxReplicas)
	}
	slices.Sort(names)
	if len(names) > 0 {
		o.Autoscaler = "HorizontalPodAutoscaler " + strings.Join(names, ", ")
	}
	for _, suffix := range ownSuffixes {
		if hs := byIndex(sc.autoscalers, d.Namespace+"/"+d.Name+suffix); len(hs) > 0 {
			o.ForeignAutoscaler = fmt.Sprintf("HorizontalPodAutoscaler %s/%s targets %s%s, a Deployment of fledge's", hs[0].Namespace, hs[0].Name, d.Name, suffix)
			return
		}
	}
}

// byIndex lists the autoscalers indexed under key, sorted by name.
func byIndex(idx cache.Indexer, key string) []*autoscalingv2.HorizontalPodAutoscaler {
	if idx == nil {
		return nil
	}
	objs, _ := idx.ByIndex(autoscalerTargetIndex, key)
	out := make([]*autoscalingv2.HorizontalPodAutoscaler, 0, len(objs))
	for _, obj := range objs {
		if h, ok := obj.(*autoscalingv2.HorizontalPodAutoscaler); ok {
			out = append(out, h)
		}
	}
	slices.SortFunc(out, func(a, b *autoscalingv2.HorizontalPodAutoscaler) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// analysisVars are what the checks of Deployment d's canary are rendered
// with: the canary's workload, and the side comparisons read as stable's,
// stable itself or, when the decision's revision has one, its fresh
// baseline; the linked release flag, if any, from the stored status.
func analysisVars(d *appsv1.Deployment, host string, stored, next *v1alpha1.FlightStatus) analysis.Vars {
	vars := analysis.Vars{Namespace: d.Namespace, Workload: d.Name + CanarySuffix, StableWorkload: d.Name, Service: host}
	if next.Baseline == rollout.BaselineFresh {
		vars.StableWorkload = d.Name + BaselineSuffix
	}
	if c := next.Config; c != nil && c.Pinned && c.Routed {
		// Stable's pods on stable's config serve stable's share: the
		// Deployment's own read the new content.
		vars.StableWorkload = d.Name + PreviousSuffix
	}
	if w := next.Watch; w != nil {
		switch w.State {
		case v1alpha1.WatchWatching:
			// The promoted revision is judged: the Deployment's pods (a
			// fresh baseline of its rollout is gone).
			vars.Workload, vars.StableWorkload = d.Name, d.Name
		case v1alpha1.WatchReverted, v1alpha1.WatchRestoring:
			// The previous revision's pods serve in stable's place.
			vars.StableWorkload = d.Name + PreviousSuffix
		}
	}
	if len(stored.Flags) > 0 {
		fl := stored.Flags[0]
		vars.Flag, vars.OnVariant, vars.OffVariant = fl.Flag, fl.On, fl.Off
	}
	return vars
}
