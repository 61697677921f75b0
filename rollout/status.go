package rollout

import "github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"

// MaxRequests bounds the request ids a Flight remembers.
const MaxRequests = 50

// ImageRefs lists the images alone, for messages and payloads.
func ImageRefs(in []v1alpha1.ContainerImage) []string {
	if in == nil {
		return nil
	}
	out := make([]string, len(in))
	for i, c := range in {
		out[i] = c.Image
	}
	return out
}

// MaxCalls bounds Calls; pending calls and passed gates are kept first.
const MaxCalls = 40

// Outbox bounds: pending entries beyond MaxPending are dropped oldest
// first (with a warning), and MaxDelivered done entries are kept.
const (
	MaxPending   = 20
	MaxDelivered = 10
)

// MaxDecisions bounds the decision log so a Flight stays small.
const MaxDecisions = 30
