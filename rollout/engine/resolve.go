package engine

// Bad input on a Deployment: its annotations are read into the Flight's
// spec and effective policy field by field, and reported on the Flight.

import (
	"context"
	"errors"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fledgehq/fledge/rollout"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
)

// resolve reads the Deployment's annotations into the Flight's spec and
// its effective policy, with the error naming each bad field. A bad field
// is refused, not the whole: for a Flight fledge has taken over (last),
// it keeps the value last accepted (recorded in last's spec), so that the
// rollout goes on being judged. The policy is nil only when there is
// nothing valid to judge under.
func (c *Controller) resolve(d *appsv1.Deployment, last *v1alpha1.Flight) (v1alpha1.FlightSpec, *rollout.Policy, error) {
	if last != nil && last.Status.Phase == "" {
		last = nil // never taken over: no settings were ever in force
	}
	var errs []error
	spec := v1alpha1.FlightSpec{Deployment: d.Name, Policy: d.Annotations[rollout.AnnotationRollout], Host: d.Name, StableService: d.Name}
	if v, ok := d.Annotations[rollout.AnnotationVirtualService]; ok {
		vs, route, err := rollout.ParseVirtualService(v)
		switch {
		case err == nil:
			spec.VirtualService, spec.Route = vs, route
		case last == nil:
			return spec, nil, err
		default:
			errs = append(errs, err)
			spec.VirtualService, spec.Route = last.Spec.VirtualService, last.Spec.Route
		}
	}
	p, err := c.policies.Get(spec.Policy)
	if err != nil {
		err = &rollout.FieldError{Field: "annotation " + rollout.AnnotationRollout, Err: err}
		if last == nil || last.Spec.Policy == spec.Policy {
			return spec, nil, errors.Join(append(errs, err)...)
		}
		if p, _ = c.policies.Get(last.Spec.Policy); p == nil {
			return spec, nil, errors.Join(append(errs, err)...)
		}
		errs = append(errs, err)
		spec.Policy = last.Spec.Policy
	}
	// Each override on its own: a bad one keeps its last accepted value.
	var accepted v1alpha1.FlightOverrides
	if last != nil {
		accepted = last.Spec.Overrides
	}
	for _, f := range []struct {
		key            string
		spec, accepted *string
	}{
		{rollout.AnnotationStepWeights, &spec.Overrides.StepWeights, &accepted.StepWeights},
		{rollout.AnnotationMaxWeight, &spec.Overrides.MaxWeight, &accepted.MaxWeight},
		{rollout.AnnotationInterval, &spec.Overrides.Interval, &accepted.Interval},
	} {
		v, ok := d.Annotations[f.key]
		if !ok {
			continue
		}
		if _, err := rollout.ParseOverrides(map[string]string{f.key: v}); err != nil {
			if last == nil {
				return spec, nil, errors.Join(append(errs, err)...)
			}
			errs = append(errs, err)
			*f.spec = *f.accepted
			continue
		}
		*f.spec = v
	}
	o, err := rollout.ParseOverrides(rollout.AnnotationsOf(spec.Overrides))
	if err == nil {
		var eff *rollout.Policy
		if eff, err = p.Effective(o); err == nil {
			return spec, eff, errors.Join(append(errs, rollout.UnknownAnnotations(d.Annotations))...)
		}
	}
	// Valid one by one, not together (a maximum weight below the steps
	// asked for): the last accepted overrides, whole.
	if last == nil {
		return spec, nil, errors.Join(append(errs, err)...)
	}
	errs = append(errs, err)
	spec.Overrides = last.Spec.Overrides
	o, _ = rollout.ParseOverrides(rollout.AnnotationsOf(spec.Overrides))
	eff, lastErr := p.Effective(o)
	if lastErr != nil {
		return spec, nil, errors.Join(append(errs, lastErr)...)
	}
	return spec, eff, errors.Join(append(errs, rollout.UnknownAnnotations(d.Annotations))...)
}

// reportInvalid sets the Valid condition, with an Event when it changes.
func (c *Controller) reportInvalid(ctx context.Context, d *appsv1.Deployment, f *v1alpha1.Flight, invalid error) error {
	now := c.clock.Now()
	cur := meta.FindStatusCondition(f.Status.Conditions, "Valid")
	if cur != nil && cur.Status == metav1.ConditionFalse && cur.Message == invalidMessage(invalid) {
		return nil
	}
	c.noteInvalid(d, f, invalid)
	dec := rollout.Decision{Status: *f.Status.DeepCopy()}
	dec.Status.Conditions = setValid(dec.Status.Conditions, invalid, now)
	_, err := c.exec.Apply(ctx, Subject{Flight: f, Deployment: d, Target: targetOf(f)}, dec)
	return err
}

// noteInvalid records a Warning Event for bad input, once per distinct
// message (the Flight's Valid condition holds the last one).
func (c *Controller) noteInvalid(d *appsv1.Deployment, f *v1alpha1.Flight, invalid error) {
	if invalid == nil {
		return
	}
	if cur := meta.FindStatusCondition(f.Status.Conditions, "Valid"); cur != nil && cur.Status == metav1.ConditionFalse && cur.Message == invalidMessage(invalid) {
		return
	}
	c.exec.Recorder.Event(d, corev1.EventTypeWarning, "InvalidSpec", invalidMessage(invalid))
}

// invalidMessage is bad input's report on one line ("; " between its
// problems), bounded whatever the input.
func invalidMessage(invalid error) string {
	msg := strings.ReplaceAll(invalid.Error(), "\n", "; ")
	const most = 2048
	if len(msg) > most {
		msg = strings.ToValidUTF8(msg[:most], "") + "..."
	}
	return msg
}

func setValid(conds []metav1.Condition, invalid error, now time.Time) []metav1.Condition {
	c := metav1.Condition{Type: "Valid", Status: metav1.ConditionTrue, Reason: "Valid", Message: "policy and annotations are valid", LastTransitionTime: metav1.NewTime(now)}
	if invalid != nil {
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, "InvalidSpec", invalidMessage(invalid)
	}
	meta.SetStatusCondition(&conds, c)
	return conds
}
