package rollout

import (
	"encoding/json"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Bounds are latency bounds as a policy writes them: one duration
// ("250ms") or a list of them ([100ms, 250ms, 1s]).
type Bounds []metav1.Duration

// UnmarshalJSON reads one duration or a list.
func (b *Bounds) UnmarshalJSON(data []byte) error {
	var one metav1.Duration
	if err := json.Unmarshal(data, &one); err == nil {
		*b = Bounds{one}
		return nil
	}
	var many []metav1.Duration
	if err := json.Unmarshal(data, &many); err != nil {
		return fmt.Errorf("slowerThan: %s is neither a duration (\"250ms\") nor a list of them", data)
	}
	*b = many
	return nil
}

// MarshalJSON writes one bound as a duration, several as a list.
func (b Bounds) MarshalJSON() ([]byte, error) {
	if len(b) == 1 {
		return json.Marshal(b[0])
	}
	return json.Marshal([]metav1.Duration(b))
}

// isComparison reports whether a metric as written is a comparison.
