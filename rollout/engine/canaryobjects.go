package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"

	"github.com/fledgehq/fledge/rollout"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	"github.com/fledgehq/fledge/traffic"
)

// CachedReads reads Deployments and Services from the informers' caches
// (a lister's NotFound when the cache has no such object).
//
// With it, the executor reads fledge's own objects (the canary Deployment
// and Service, "<name>-stable") from the cache, and asks the API server
// only when the cache may be behind: a write that answers a conflict or
// AlreadyExists is read again live and retried, and a miss before a
// scale-down or a delete (which, skipped, would leave a canary running) is
// confirmed live. A rollout's start so makes its creates and no GET: under
// 200 rollouts starting at once, those GETs were a third of its calls.
// Ownership is checked on whatever was read, and every write that
// follows is conditioned on what was read (its resourceVersion or UID),
// so a stale read can cost a retry, never a write to someone else's
// object.
type CachedReads struct {
	Deployment func(ns, name string) (*appsv1.Deployment, error)
	Service    func(ns, name string) (*corev1.Service, error)
}

// Read modes: from the cache (a miss is NotFound), from the cache with a
// miss confirmed live, or live.
type readMode int

const (
	cachedRead readMode = iota
	cachedOrLive
	liveRead
)

// read reads ns/name: from the cache the mode allows (when there is one),
// else with get.
func read[T any](ctx context.Context, cached func(ns, name string) (T, error), get func(context.Context, string, metav1.GetOptions) (T, error), ns, name string, mode readMode) (T, error) {
	if mode != liveRead && cached != nil {
		obj, err := cached(ns, name)
		if err == nil || mode == cachedRead || !apierrors.IsNotFound(err) {
			return obj, err
		}
	}
	return get(ctx, name, metav1.GetOptions{})
}

func (x *Executor) readDeployment(ctx context.Context, ns, name string, mode readMode) (*appsv1.Deployment, error) {
	var cached func(ns, name string) (*appsv1.Deployment, error)
	if x.Cached != nil {
		cached = x.Cached.Deployment
	}
	return read(ctx, cached, x.Kube.AppsV1().Deployments(ns).Get, ns, name, mode)
}

func (x *Executor) readService(ctx context.Context, ns, name string, mode readMode) (*corev1.Service, error) {
	var cached func(ns, name string) (*corev1.Service, error)
	if x.Cached != nil {
		cached = x.Cached.Service
	}
	return read(ctx, cached, x.Kube.CoreV1().Services(ns).Get, ns, name, mode)
}

// ensureCanary creates or updates the canary Deployment and Service. It
// refuses to run a revision other than the one decided: if the template
// changed since, the next decision will see it.
func (x *Executor) ensureCanary(ctx context.Context, s Subject, revision string, replicas int32, config []v1alpha1.ConfigItem) error {
	d := s.Deployment
	if d == nil {
		return nil
	}
	if got := TemplateHash(d.Spec.Template); got != rollout.TemplateOf(revision) {
		return fmt.Errorf("the Deployment's template is now %s, not %s: deciding again", got, rollout.TemplateOf(revision))
	}
	if s.Stable == nil {
		return fmt.Errorf("stable service %s/%s not found", d.Namespace, s.Target.Stable)
	}
	owner := *metav1.NewControllerRef(s.Flight, v1alpha1.FlightResource.GroupVersion().WithKind("Flight"))
	if s.StableDirect {
		// First, so that a name taken by someone else stops the canary
		// before anything is created for it.
		want := StableService(s.Stable, s.Flight.Name, owner)
		if err := x.ensureService(ctx, s, want, func(cur *corev1.Service) error {
			return fmt.Errorf("service %s/%s exists and is not fledge's (no %s=%s label and controller reference to Flight %s), so fledge will not change it; "+
				"it is needed because the policy's load test names a stableUrl: rename that Service, or drop stableUrl: %w",
				cur.Namespace, cur.Name, LabelManagedBy, managedBy, s.Flight.Name, traffic.ErrConflict)
		}); err != nil {
			return err
		}
	}
	want := CanaryDeployment(d, s.Stable.Spec.Selector, revision, owner)
	rewriteConfig(&want.Spec.Template.Spec, d.Name, config)
	sized(want, replicas)
	svc := CanaryService(s.Stable, want, owner)
	// Both names are checked first, so that nothing is created for a
	// canary whose Service or Deployment name is taken (as far as the
	// cache shows; a name taken since fails its create, and is read live).
	if cur, err := x.readService(ctx, svc.Namespace, svc.Name, cachedRead); err == nil && !ownedBy(cur, s.Flight) {
		return fmt.Errorf("%s: %w", notOurs("service", cur), traffic.ErrConflict)
	}
	if cur, err := x.readDeployment(ctx, want.Namespace, want.Name, cachedRead); err == nil && !ownedBy(cur, s.Flight) {
		return fmt.Errorf("%s: %w", notOurs("deployment", cur), traffic.ErrConflict)
	}
	if s.StalePreviewHost != "" {
		// An earlier plan's preview host: it would reach this canary.
		if err := x.deleteOwned(ctx, s, "service", s.StalePreviewHost); err != nil {
			return err
		}
	}
	var preview *corev1.Service
	if h := s.PreviewHost; h != "" {
		for _, own := range []string{d.Name, d.Name + CanarySuffix, d.Name + StableSuffix, d.Name + BaselineSuffix, d.Name + ComparatorSuffix, d.Name + PreviousSuffix, s.Target.Stable} {
			if h == own {
				return fmt.Errorf("the blue/green preview's host %s is the name of the app's Service or of one fledge makes for it: give the preview a host of its own (%s-preview): %w", h, rollout.NamePlaceholder, traffic.ErrConflict)
			}
		}
		preview = svc.DeepCopy()
		preview.Name = s.PreviewHost
		if cur, err := x.readService(ctx, preview.Namespace, preview.Name, cachedRead); err == nil && !ownedBy(cur, s.Flight) {
			return fmt.Errorf("%s (the blue/green preview's host): %w", notOurs("service", cur), traffic.ErrConflict)
		}
	}
	// Then both at once: a rollout's start is one round trip shorter,
	// which is what 200 rollouts starting together wait on.
	var wg sync.WaitGroup
	var svcErr error
	wg.Go(func() {
		theirs := func(cur *corev1.Service) error {
			return fmt.Errorf("%s: %w", notOurs("service", cur), traffic.ErrConflict)
		}
		svcErr = x.ensureService(ctx, s, svc, theirs)
		if svcErr == nil && preview != nil {
			svcErr = x.ensureService(ctx, s, preview, theirs)
		}
	})
	err := x.ensureCanaryDeployment(ctx, s, want, revision)
	wg.Wait()
	return errors.Join(svcErr, err)
}

// ensureBaseline creates or updates the fresh baseline's Deployment and
// Service: stable's template, read from the Deployment's ReplicaSet of
// revision (stable's), at the canary's size. A name taken by someone else
// is a conflict, and nothing of the baseline is created.
func (x *Executor) ensureBaseline(ctx context.Context, s Subject, revision string, replicas int32, config []v1alpha1.ConfigItem) error {
	return x.ensureRevisionCopy(ctx, s, revision, replicas, config, BaselineSuffix)
}

// ensurePrevious creates or updates the previous revision's Deployment and
// Service kept through the watch after a promotion: the template of the
// Deployment's ReplicaSet of revision (the one promoted away from), at
// stable's size unless replicas says otherwise. A name taken by someone
// else is a conflict, and nothing of it is created.
func (x *Executor) ensurePrevious(ctx context.Context, s Subject, revision string, replicas int32, config []v1alpha1.ConfigItem) error {
	return x.ensureRevisionCopy(ctx, s, revision, replicas, config, PreviousSuffix)
}

// ensureRevisionCopy is ensureBaseline and ensurePrevious: "<name><suffix>"
// running the template of the Deployment's ReplicaSet of revision.
func (x *Executor) ensureRevisionCopy(ctx context.Context, s Subject, revision string, replicas int32, config []v1alpha1.ConfigItem, suffix string) error {
	d := s.Deployment
	if d == nil {
		return nil
	}
	if s.Stable == nil {
		return fmt.Errorf("stable service %s/%s not found", d.Namespace, s.Target.Stable)
	}
	owner := *metav1.NewControllerRef(s.Flight, v1alpha1.FlightResource.GroupVersion().WithKind("Flight"))
	name := d.Name + suffix
	if cur, err := x.readService(ctx, d.Namespace, name, cachedRead); err == nil && !ownedBy(cur, s.Flight) {
		return fmt.Errorf("%s: %w", notOurs("service", cur), traffic.ErrConflict)
	}
	cur, err := x.readDeployment(ctx, d.Namespace, name, cachedRead)
	switch {
	case err == nil && !ownedBy(cur, s.Flight):
		return fmt.Errorf("%s: %w", notOurs("deployment", cur), traffic.ErrConflict)
	case err == nil && cur.Annotations[AnnotationRevision] == revision:
		// Running stable's revision already: its size may need
		// correcting, its template not (no ReplicaSet read); its Service
		// is ensured too (deleted since, or stable's ports changed).
		want := cur.DeepCopy()
		want.Spec.Replicas = CanaryDeployment(d, s.Stable.Spec.Selector, revision, owner).Spec.Replicas
		sized(want, replicas)
		if err := x.ensureCanaryDeployment(ctx, s, want, revision); err != nil {
			return err
		}
		return x.ensureService(ctx, s, CanaryService(s.Stable, want, owner), func(cur *corev1.Service) error {
			return fmt.Errorf("%s: %w", notOurs("service", cur), traffic.ErrConflict)
		})
	}
	if sel := CanaryDeployment(d, s.Stable.Spec.Selector, revision, owner).Spec.Selector.MatchLabels; len(sel) == 1 {
		// The canary is selected by its Flight label alone, which the
		// baseline's pods carry too: the canary's Service would reach them.
		return fmt.Errorf("deployment %s/%s: no label of the new template is one its Service selects on, so the canary's Service would reach the pods of %s too: they are not started: %w", d.Namespace, d.Name, name, traffic.ErrConflict)
	}
	tmpl, err := x.stableTemplate(ctx, d, rollout.TemplateOf(revision))
	if err != nil {
		return err
	}
	want, err := revisionCopy(d, tmpl, s.Stable.Spec.Selector, revision, owner, suffix)
	if err != nil {
		return err
	}
	rewriteConfig(&want.Spec.Template.Spec, d.Name, config)
	sized(want, replicas)
	if err := x.ensureService(ctx, s, CanaryService(s.Stable, want, owner), func(cur *corev1.Service) error {
		return fmt.Errorf("%s: %w", notOurs("service", cur), traffic.ErrConflict)
	}); err != nil {
		return err
	}
	return x.ensureCanaryDeployment(ctx, s, want, revision)
}

// sized sets the size of a Deployment fledge makes to the one decided
// (the canary's, by its share), if one was (replicas above 0); otherwise it
// keeps the builder's (stable's).
func sized(d *appsv1.Deployment, replicas int32) {
	if replicas > 0 {
		d.Spec.Replicas = ptr.To(replicas)
	}
}

// stableTemplate is the pod template of Deployment d's ReplicaSet of
// revision (a TemplateHash), read live: a baseline starts once a rollout.
func (x *Executor) stableTemplate(ctx context.Context, d *appsv1.Deployment, revision string) (corev1.PodTemplateSpec, error) {
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return corev1.PodTemplateSpec{}, fmt.Errorf("deployment %s/%s: selector: %w", d.Namespace, d.Name, err)
	}
	sets, err := x.Kube.AppsV1().ReplicaSets(d.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return corev1.PodTemplateSpec{}, err
	}
	for i := range sets.Items {
		rs := &sets.Items[i]
		if metav1.IsControlledBy(rs, d) && TemplateHash(rs.Spec.Template) == revision {
			return rs.Spec.Template, nil
		}
	}
	return corev1.PodTemplateSpec{}, fmt.Errorf("deployment %s/%s has no ReplicaSet of the stable revision %s to start a baseline from", d.Namespace, d.Name, revision)
}

// deleteBaseline removes the fresh baseline's Deployment and Service if
// they are this Flight's.
func (x *Executor) deleteBaseline(ctx context.Context, s Subject) error {
	return x.deleteRevisionCopy(ctx, s, BaselineSuffix)
}

// deletePrevious removes the previous revision's Deployment and Service
// kept through a watch, if they are this Flight's.
func (x *Executor) deletePrevious(ctx context.Context, s Subject) error {
	return x.deleteRevisionCopy(ctx, s, PreviousSuffix)
}

func (x *Executor) deleteRevisionCopy(ctx context.Context, s Subject, suffix string) error {
	name := s.Target.Name + suffix
	if err := x.deleteOwned(ctx, s, "deployment", name); err != nil {
		return err
	}
	return x.deleteOwned(ctx, s, "service", name)
}

// ensureCanaryDeployment creates or corrects the canary Deployment want, or
// another fledge makes beside it (the baseline, the comparator): its
// template follows from revision (its AnnotationRevision).
func (x *Executor) ensureCanaryDeployment(ctx context.Context, s Subject, want *appsv1.Deployment, revision string) error {
	deployments := x.Kube.AppsV1().Deployments(want.Namespace)
	// The Deployment controller writes the canary's status all the time:
	// an update that loses to it (or to a cache behind) is read again,
	// live, and retried.
	mode := cachedRead
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := x.readDeployment(ctx, want.Namespace, want.Name, mode)
		mode = liveRead
		switch {
		case apierrors.IsNotFound(err):
			x.count("canary")
			_, err = deployments.Create(ctx, want, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				// Made since the cache was filled: read it and decide again.
				return apierrors.NewConflict(appsv1.Resource("deployments"), want.Name, err)
			}
			return err
		case err != nil:
			return err
		case !ownedBy(cur, s.Flight):
			return fmt.Errorf("%s: %w", notOurs("deployment", cur), traffic.ErrConflict)
		case !equality.Semantic.DeepEqual(cur.Spec.Selector, want.Spec.Selector):
			// A selector cannot change: replace the Deployment (the one
			// read, by its UID).
			x.count("canary")
			if err := deployments.Delete(ctx, cur.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &cur.UID}}); err != nil {
				return err
			}
			return fmt.Errorf("deployment %s/%s: selector changed, recreating", cur.Namespace, cur.Name)
		}
		if cur.Annotations[AnnotationRevision] == revision && slices.Equal(Images(cur.Spec.Template), Images(want.Spec.Template)) {
			// The template follows from the revision: only the size can
			// differ. (Comparing whole specs would see the API server's
			// defaults as changes and update on every look.) Images that
			// differ are someone's change of fledge's canary: its spec
			// is replaced below.
			if ptr.Deref(cur.Spec.Replicas, 1) == ptr.Deref(want.Spec.Replicas, 1) {
				return nil
			}
			x.count("canary")
			// Conditioned on the UID read (not its resourceVersion, which
			// the Deployment controller's status writes keep changing).
			patch := fmt.Sprintf(`{"metadata":{"uid":%q},"spec":{"replicas":%d}}`, cur.UID, ptr.Deref(want.Spec.Replicas, 1))
			_, err = deployments.Patch(ctx, cur.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
			return err
		}
		next := cur.DeepCopy()
		next.Annotations = want.Annotations
		next.Spec = want.Spec
		x.count("canary")
		_, err = deployments.Update(ctx, next, metav1.UpdateOptions{})
		return err
	})
}

// ensureService creates want, or corrects the selector and ports of the
// Service of its name if it is this Flight's; one that is not is left as
// it is, and theirs says why (a conflict, which holds the rollout with a
// reason until the name is free).
func (x *Executor) ensureService(ctx context.Context, s Subject, want *corev1.Service, theirs func(*corev1.Service) error) error {
	services := x.Kube.CoreV1().Services(want.Namespace)
	mode := cachedRead
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := x.readService(ctx, want.Namespace, want.Name, mode)
		mode = liveRead
		switch {
		case apierrors.IsNotFound(err):
			x.count("canary")
			_, err = services.Create(ctx, want, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				return apierrors.NewConflict(corev1.Resource("services"), want.Name, err)
			}
			return err
		case err != nil:
			return err
		case !ownedBy(cur, s.Flight):
			return theirs(cur)
		case equality.Semantic.DeepEqual(cur.Spec.Selector, want.Spec.Selector) && equality.Semantic.DeepEqual(cur.Spec.Ports, mergePorts(cur.Spec.Ports, want.Spec.Ports)):
			return nil
		}
		// The stable Service changed since (a new port, a selector
		// edited): follow it.
		next := cur.DeepCopy()
		next.Spec.Selector = want.Spec.Selector
		next.Spec.Ports = mergePorts(cur.Spec.Ports, want.Spec.Ports)
		x.count("canary")
		_, err = services.Update(ctx, next, metav1.UpdateOptions{})
		return err
	})
}

// scaleCanaryDown scales the canary Deployment to zero if it is this
// Flight's, conditioned on the UID read: an object made under the name in
// between is not touched either.
func (x *Executor) scaleCanaryDown(ctx context.Context, s Subject) error {
	name := s.Target.Name + CanarySuffix
	if s.PreviewHost != "" {
		// Its preview's host would reach no pod: it goes.
		if err := x.deleteOwned(ctx, s, "service", s.PreviewHost); err != nil {
			return err
		}
	}
	return x.actOnOwned(ctx, s, "deployment", name, func(uid types.UID) error {
		patch := fmt.Sprintf(`{"metadata":{"uid":%q},"spec":{"replicas":0}}`, uid)
		_, err := x.Kube.AppsV1().Deployments(s.Target.Namespace).Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
		return err
	})
}

// deleteOwned deletes the Deployment or Service name if it is this
// Flight's, conditioned on the UID read; anything else of that name is
// left alone.
func (x *Executor) deleteOwned(ctx context.Context, s Subject, kind, name string) error {
	ns := s.Target.Namespace
	return x.actOnOwned(ctx, s, kind, name, func(uid types.UID) error {
		o := metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}}
		if kind == "deployment" {
			return x.Kube.AppsV1().Deployments(ns).Delete(ctx, name, o)
		}
		return x.Kube.CoreV1().Services(ns).Delete(ctx, name, o)
	})
}

// actOnOwned reads the Deployment or Service name (from the cache, a miss
// confirmed live) and, if it is this Flight's, calls act with its UID, on
// which act conditions its write. A conflict after a cached read (the cache
// behind a replacement under the name) is read again live and tried once
// more; otherwise a conflict or NotFound means the object read is gone, and
// nothing is done. Anything else of that name, or none, is left alone.
func (x *Executor) actOnOwned(ctx context.Context, s Subject, kind, name string, act func(types.UID) error) error {
	ns := s.Target.Namespace
	for _, mode := range []readMode{cachedOrLive, liveRead} {
		var (
			obj metav1.Object
			err error
		)
		if kind == "deployment" {
			obj, err = x.readDeployment(ctx, ns, name, mode)
		} else {
			obj, err = x.readService(ctx, ns, name, mode)
		}
		switch {
		case apierrors.IsNotFound(err):
			return nil
		case err != nil:
			return err
		case !ownedBy(obj, s.Flight):
			return nil // someone else's: never fledge's to scale or delete
		}
		x.count("canary")
		err = act(obj.GetUID())
		switch {
		case apierrors.IsConflict(err) && mode != liveRead:
			continue
		case apierrors.IsNotFound(err) || apierrors.IsConflict(err):
			return nil
		}
		return err
	}
	return nil
}

// deleteStableService removes "<name>-stable" if it is fledge's: a
// Service of that name someone else created is never deleted. The
// delete is conditioned on the UID read, so that an object created under
// the name in between is not removed either.
func (x *Executor) deleteStableService(ctx context.Context, s Subject) error {
	return x.deleteOwned(ctx, s, "service", s.Target.Name+StableSuffix)
}
