package rollout

import (
	"errors"
	"testing"
)

// UnknownAnnotations is what both the engine (an InvalidSpec Event and
// the Valid condition) and fledgectl lint (a warning) report about keys
// fledge would otherwise silently ignore.
func TestUnknownAnnotations(t *testing.T) {
	tests := []struct {
		name        string
		annotations map[string]string
		// want: each unknown key with the known key suggested for it.
		want [][2]string
	}{
		{"reports nothing when every fledge.dev/ key is known", map[string]string{
			AnnotationRollout: "standard", AnnotationStepWeights: "5,10", AnnotationMaxWeight: "20", AnnotationInterval: "1m",
			AnnotationVirtualService: "shop", AnnotationAction: "pause", AnnotationActionReason: "why",
		}, nil},
		{"ignores keys of other prefixes", map[string]string{"fledge.io/rollout": "x", "example.com/fledge.dev": "y", "app": "shop"}, nil},
		{"suggests the nearest known key for a typo", map[string]string{AnnotationRollout: "standard", "fledge.dev/step-weight": "5"},
			[][2]string{{"fledge.dev/step-weight", AnnotationStepWeights}}},
		{"reports every unknown key, in key order", map[string]string{"fledge.dev/virtualservice": "shop", "fledge.dev/intervall": "1m", "fledge.dev/rolout": "x"},
			[][2]string{{"fledge.dev/intervall", AnnotationInterval}, {"fledge.dev/rolout", AnnotationRollout}, {"fledge.dev/virtualservice", AnnotationVirtualService}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := UnknownAnnotations(tc.annotations)
			var got [][2]string
			if err != nil {
				for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
					fe, ok := errors.AsType[*FieldError](e)
					if !ok {
						t.Fatalf("%v is not a FieldError", e)
					}
					got = append(got, [2]string{fe.Field, fe.Err.Error()})
				}
			}
			if len(got) != len(tc.want) {
				t.Fatalf("reported %q, want %d keys %q", got, len(tc.want), tc.want)
			}
			for i, w := range tc.want {
				if got[i][0] != "annotation "+w[0] || got[i][1] != "not an annotation fledge reads, and ignored (did you mean "+w[1]+"?)" {
					t.Errorf("report %d: %q, want key %s and the suggestion %s", i, got[i], w[0], w[1])
				}
			}
		})
	}
}
