package traffic_test

import (
	"strings"
	"testing"

	"github.com/fledgehq/fledge/traffic"
)

// TestWeightsValidateRejectsInvalidUTF8 checks that a cohort value that is
// not valid UTF-8 is refused, naming the field: a VirtualService is stored
// as JSON, which turns such bytes into U+FFFD, so the routing would never
// read back as set (found by FuzzMatchRoutesRoundTrip in traffic/istio).
func TestWeightsValidateRejectsInvalidUTF8(t *testing.T) {
	for _, c := range []struct {
		name   string
		cohort traffic.Cohort
		field  string
	}{
		{"exact", traffic.Cohort{Name: "beta", Header: "x-tier", Exact: "\xff"}, "exact"},
		{"exact with valid text around", traffic.Cohort{Name: "beta", Header: "x-tier", Exact: "be\xc3ta"}, "exact"},
		{"regex", traffic.Cohort{Name: "beta", Header: "x-tier", Regex: "^be\xfe$"}, "regex"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := traffic.Weights{Stable: 100, Cohort: c.cohort}.Validate()
			if err == nil {
				t.Fatalf("Validate of cohort %+v succeeded, want an error", c.cohort)
			}
			if msg := err.Error(); !strings.Contains(msg, c.field) || !strings.Contains(msg, "UTF-8") {
				t.Errorf("Validate = %q, want an error naming %s and UTF-8", msg, c.field)
			}
		})
	}
}

// TestWeightsValidateAcceptsUTF8CohortValues checks that valid non-ASCII
// text is still a cohort value.
func TestWeightsValidateAcceptsUTF8CohortValues(t *testing.T) {
	for _, c := range []traffic.Cohort{
		{Name: "beta", Header: "x-tier", Exact: "bêta-東京"},
		{Name: "beta", Header: "x-tier", Regex: "^bêta|東京$"},
	} {
		if err := (traffic.Weights{Stable: 100, Cohort: c}).Validate(); err != nil {
			t.Errorf("Validate of cohort %+v = %v, want nil", c, err)
		}
	}
}
