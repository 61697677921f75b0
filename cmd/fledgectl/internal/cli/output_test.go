package cli

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fledgehq/fledge/rollout/rolloutpb"
)

// A Flight's watch after its promotion is a line of its own: its state,
// the two revisions, until when, and why.
func TestStatusShowsTheWatchAfterAPromotion(t *testing.T) {
	var b strings.Builder
	f := &rolloutpb.Flight{Namespace: "prod", Name: "shop", Phase: rolloutpb.Phase_PHASE_SUCCEEDED, Step: -1,
		Watch: &rolloutpb.PromotionWatch{Revision: "r2", Previous: "r1", State: "Watching", Until: timestamppb.New(time.Now().Add(5 * time.Minute)),
			Message: "error-rate: r2 0.4% over 1200 requests since the promotion"}}
	if err := printStatus(&b, f); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Watch:", "Watching of r2 (previous r1) until", "error-rate: r2 0.4%"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status does not say %q:\n%s", want, b.String())
		}
	}
	b.Reset()
	f.Watch = nil
	if err := printStatus(&b, f); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "Watch:") {
		t.Errorf("a Flight without a watch shows one:\n%s", b.String())
	}
}
