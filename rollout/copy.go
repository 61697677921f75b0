package rollout

import (
	"github.com/fledgehq/fledge/analysis"
)

// copyChecks copies checks the decision takes from its input into the
// status or a notification, so that a decision never shares memory with
// the status it was given. (Slices of plain values are copied with
// slices.Clone, a load result with its generated DeepCopy.)
func copyChecks(in []analysis.Check) []analysis.Check {
	if in == nil {
		return nil
	}
	out := make([]analysis.Check, len(in))
	for i := range in {
		in[i].DeepCopyInto(&out[i])
	}
	return out
}
