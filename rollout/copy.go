package rollout

import (
	"github.com/fledgehq/fledge/analysis"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	"github.com/fledgehq/fledge/webhooks"
)

// Copies for values the decision builds from its input, so that a
// decision never shares memory with the status it was given.

func copyChecks(in []analysis.Check) []analysis.Check {
	if in == nil {
		return nil
	}
	out := make([]analysis.Check, len(in))
	for i, c := range in {
		if c.Value != nil {
			v := *c.Value
			c.Value = &v
		}
		out[i] = c
	}
	return out
}

func copyStrings(in []string) []string {
	if in == nil {
		return nil
	}
	return append([]string(nil), in...)
}

func copyInt32s(in []int32) []int32 {
	if in == nil {
		return nil
	}
	return append([]int32(nil), in...)
}

func copyLoad(in *webhooks.LoadResult) *webhooks.LoadResult {
	if in == nil {
		return nil
	}
	out := *in
	out.Errors = copyStrings(in.Errors)
	return &out
}

func copyImages(in []v1alpha1.ContainerImage) []v1alpha1.ContainerImage {
	if in == nil {
		return nil
	}
	return append([]v1alpha1.ContainerImage(nil), in...)
}
