package engine

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/fledgehq/fledge/rollout"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
)

// The executor's side of config tracking: fledge's copies of config
// content, and the restart of the Deployment's pods that may read older
// content.

// ensureConfigCopies makes fledge's copies of config content that do not
// exist yet: each from the object it copies, if that still has the
// content (the decision sees it lost otherwise).
func (x *Executor) ensureConfigCopies(ctx context.Context, s Subject, items []v1alpha1.ConfigItem) error {
	if s.Deployment == nil {
		return nil
	}
	ns := s.Deployment.Namespace
	owner := *metav1.NewControllerRef(s.Flight, v1alpha1.FlightResource.GroupVersion().WithKind("Flight"))
	for _, it := range items {
		meta := func(src metav1.ObjectMeta) metav1.ObjectMeta {
			return metav1.ObjectMeta{
				Name: rollout.CopyName(s.Flight.Name, it), Namespace: ns,
				Labels:          map[string]string{LabelManagedBy: managedBy, LabelFlight: s.Flight.Name, LabelConfigCopyOf: truncLabel(it.Name)},
				Annotations:     map[string]string{AnnotationConfig: ConfigIgnore},
				OwnerReferences: []metav1.OwnerReference{owner},
			}
		}
		var err error
		x.count("config")
		switch it.Kind {
		case rollout.ConfigKindConfigMap:
			var src *corev1.ConfigMap
			src, err = x.Kube.CoreV1().ConfigMaps(ns).Get(ctx, it.Name, metav1.GetOptions{})
			if err == nil && ContentHash(src.Data, src.BinaryData) == it.Hash {
				_, err = x.Kube.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: meta(src.ObjectMeta), Data: src.Data, BinaryData: src.BinaryData, Immutable: ptr.To(true)}, metav1.CreateOptions{})
			}
		case rollout.ConfigKindSecret:
			var src *corev1.Secret
			src, err = x.Kube.CoreV1().Secrets(ns).Get(ctx, it.Name, metav1.GetOptions{})
			if err == nil && SecretHash(src.UID, src.Data) == it.Hash {
				_, err = x.Kube.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: meta(src.ObjectMeta), Type: src.Type, Data: src.Data, Immutable: ptr.To(true)}, metav1.CreateOptions{})
			}
		}
		switch {
		case err == nil, apierrors.IsAlreadyExists(err):
			// Made, or made already (whose it is, the next look reads).
		case apierrors.IsNotFound(err):
			// Gone: the decision sees the copy lost.
		default:
			// Said, not failed: the decision's other actions (a rollback's
			// routing, say) go on; the next look asks again. Never the
			// content: for a Secret, only the reason (an admission
			// webhook's message might echo the object).
			why := err.Error()
			if it.Kind == rollout.ConfigKindSecret {
				why = string(apierrors.ReasonForError(err))
			}
			if x.Recorder != nil && s.Deployment != nil {
				x.Recorder.Eventf(s.Deployment, corev1.EventTypeWarning, "ConfigCopyFailed", "fledge could not copy %s %s/%s: %s", it.Kind, ns, it.Name, why)
			}
		}
	}
	return nil
}

// truncLabel cuts a name to a label value's 63 characters.
func truncLabel(s string) string {
	if len(s) > 63 {
		s = strings.TrimRight(s[:63], ".-_")
	}
	return s
}

// deleteConfigCopies deletes the Flight's copies named "kind/name", each
// only if it is this Flight's (read live, deleted on its UID).
func (x *Executor) deleteConfigCopies(ctx context.Context, s Subject, names []string) error {
	ns := s.Target.Namespace
	var errs []error
	for _, n := range names {
		kind, name, _ := strings.Cut(n, "/")
		var obj metav1.Object
		var err error
		switch kind {
		case rollout.ConfigKindConfigMap:
			obj, err = x.Kube.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
		case rollout.ConfigKindSecret:
			obj, err = x.Kube.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
		default:
			continue
		}
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !ownedBy(obj, s.Flight) || obj.GetLabels()[LabelConfigCopyOf] == "" {
			continue // not fledge's copy: never deleted
		}
		uid := obj.GetUID()
		o := metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}}
		x.count("config")
		if kind == rollout.ConfigKindConfigMap {
			err = x.Kube.CoreV1().ConfigMaps(ns).Delete(ctx, name, o)
		} else {
			err = x.Kube.CoreV1().Secrets(ns).Delete(ctx, name, o)
		}
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// restartStalePods evicts the Deployment's pods made before t, those its
// PodDisruptionBudgets allow now (the rest at later looks); its
// ReplicaSet makes them again, reading the content there is now.
func (x *Executor) restartStalePods(ctx context.Context, s Subject, t metav1.Time) error {
	d := s.Deployment
	if d == nil || x.PodsOf == nil {
		return nil
	}
	pods, err := x.PodsOf(ctx, d)
	if err != nil {
		return err
	}
	slices.SortFunc(pods, func(a, b corev1.Pod) int { return cmp.Compare(a.Name, b.Name) })
	var errs []error
	for _, p := range pods {
		if p.CreationTimestamp.After(t.Time) {
			continue // (as stalePods: made in the same second is stale)
		}
		x.count("eviction")
		err := x.Kube.CoreV1().Pods(p.Namespace).EvictV1(ctx, &policyv1.Eviction{
			ObjectMeta:    metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace},
			DeleteOptions: &metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &p.UID}},
		})
		switch {
		case err == nil, apierrors.IsNotFound(err), apierrors.IsConflict(err):
		case apierrors.IsTooManyRequests(err):
			// A PodDisruptionBudget refuses it now: the next look asks again.
		default:
			errs = append(errs, fmt.Errorf("evicting pod %s/%s: %w", p.Namespace, p.Name, err))
		}
	}
	return errors.Join(errs...)
}
