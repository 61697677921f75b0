package traffictest

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/fledgehq/fledge/traffic"
)

// Harness is what the conformance suite needs from an implementation.
type Harness struct {
	// New returns a Router and a Target it has never routed, fresh for
	// one subtest: whatever the target needs in the cluster (Services, a
	// user-owned VirtualService) is set up, and cleaned up with
	// t.Cleanup. The target names a Baseline Service too, which the
	// suite gives a share of the split in some subtests, and clears in
	// others to check a target without one.
	New func(t *testing.T) (traffic.Router, traffic.Target)
	// Shares, if set, measures where the mesh sends the target's
	// requests that all carry headers (lower-case names; cookies in
	// "cookie"; nil for none) once it applies the routing as now stored:
	// the share, 0..1, of the requests that each Service answered, by
	// the Service's name as the target spells it (a request no Service
	// answered fails the test). It is how the suite checks that the
	// weights written are the weights applied, not only the weights read
	// back, baseline included, and that a cohort, or a sticky cookie,
	// reaches the canary.
	Shares func(t *testing.T, target traffic.Target, headers map[string]string) map[string]float64
	// MirrorShare, if set, measures the share of the target's requests,
	// 0..1, that the mesh copies to the canary (mirrors) as it applies the
	// routing now stored.
	MirrorShare func(t *testing.T, target traffic.Target) float64
	// CannotMirror says the router refuses mirrors (traffic.ErrConflict,
	// changing nothing), as a router that may not change the route's own
	// fields does.
	CannotMirror bool
	// Tolerance is how far a measured share may be from the weight set,
	// for shares other than 0 and 100, which must be exact; default 0.05.
	Tolerance float64
}

// Run checks that a Router behaves as traffic.Router documents. Its
// subtests do not run in parallel, so that a harness may share a cluster.
func Run(t *testing.T, h Harness) {
	if h.Tolerance == 0 {
		h.Tolerance = 0.05
	}
	s := suite{h}
	t.Run("Ensure starts at 100/0 and is idempotent", s.ensureIdempotent)
	t.Run("SetWeights then Weights round-trips every split", s.roundTrip)
	t.Run("SetWeights with the current split again changes nothing", s.setTwice)
	t.Run("invalid weights are rejected and change nothing", s.invalidWeights)
	t.Run("Ensure after SetWeights keeps the weights", s.ensureKeepsWeights)
	t.Run("Release restores plain routing and is idempotent", s.release)
	t.Run("a released target reads 100/0 and SetWeights routes it again", s.afterRelease)
	t.Run("Release of a target never routed is not an error", s.releaseNeverRouted)
	t.Run("concurrent SetWeights calls all succeed and one split wins", s.concurrent)
	t.Run("an incomplete target is rejected", s.incompleteTarget)
	t.Run("a cohort round-trips and alone reaches the canary at 100/0", s.cohortRoundTrip)
	t.Run("a sticky cookie round-trips with an 80/20 split", s.stickyRoundTrip)
	t.Run("a cohort is replaced by another cohort, then by a sticky cookie", s.cohortChanges)
	t.Run("an invalid cohort or sticky cookie is rejected and changes nothing", s.invalidMatches)
	t.Run("Ensure after SetWeights keeps the cohort and the sticky cookie", s.ensureKeepsMatches)
	t.Run("Release after a cohort and a sticky cookie restores plain routing", s.releaseMatches)
	t.Run("a mirror round-trips at 100/0 and copies its share to the canary, then goes", s.mirrorRoundTrip)
	t.Run("an invalid mirror is rejected and changes nothing", s.invalidMirrors)
	t.Run("a baseline share round-trips beside the canary's, and its destination goes with it", s.baselineRoundTrip)
	t.Run("an invalid baseline share is rejected and changes nothing", s.invalidBaselines)
}

type suite struct{ h Harness }

var (
	allStable = traffic.Weights{Stable: 100}
	allCanary = traffic.Weights{Canary: 100}
)

func (s suite) ensureIdempotent(t *testing.T) {
	r, tg := s.h.New(t)
	for range 2 {
		if err := r.Ensure(t.Context(), tg); err != nil {
			t.Fatalf("Ensure: %v", err)
		}
		s.wantWeights(t, r, tg, allStable)
	}
	s.wantApplied(t, tg, allStable)
}

func (s suite) roundTrip(t *testing.T) {
	r, tg := s.h.New(t)
	ensure(t, r, tg)
	// Up, all the way, and back down: every transition a rollout or a
	// rollback makes.
	for _, w := range []traffic.Weights{{Stable: 95, Canary: 5}, {Stable: 50, Canary: 50}, {Stable: 5, Canary: 95}, allCanary, {Stable: 80, Canary: 20}, allStable} {
		t.Run(fmt.Sprintf("%d/%d", w.Stable, w.Canary), func(t *testing.T) {
			setWeights(t, r, tg, w)
			s.wantWeights(t, r, tg, w)
			s.wantApplied(t, tg, w)
		})
	}
}

func (s suite) setTwice(t *testing.T) {
	r, tg := s.h.New(t)
	ensure(t, r, tg)
	w := traffic.Weights{Stable: 70, Canary: 30}
	setWeights(t, r, tg, w)
	setWeights(t, r, tg, w)
	s.wantWeights(t, r, tg, w)
}

func (s suite) invalidWeights(t *testing.T) {
	r, tg := s.h.New(t)
	ensure(t, r, tg)
	valid := traffic.Weights{Stable: 80, Canary: 20}
	setWeights(t, r, tg, valid)
	for _, w := range []traffic.Weights{
		{Stable: 50, Canary: 49},
		{Stable: 0, Canary: 0},
		{Stable: 101, Canary: -1},
		{Stable: -10, Canary: 110},
		{Stable: 100, Canary: 100},
	} {
		if err := r.SetWeights(t.Context(), tg, w); err == nil {
			t.Errorf("SetWeights(%+v) succeeded, want an error", w)
		}
	}
	s.wantWeights(t, r, tg, valid)
	s.wantApplied(t, tg, valid)
}

func (s suite) mirrorRoundTrip(t *testing.T) {
	r, tg := s.h.New(t)
	ensure(t, r, tg)
	w := traffic.Weights{Stable: 100, Mirror: 40}
	if s.h.CannotMirror {
		err := r.SetWeights(t.Context(), tg, w)
		if !errors.Is(err, traffic.ErrConflict) {
			t.Fatalf("SetWeights(%+v) = %v, want a conflict", w, err)
		}
		s.wantWeights(t, r, tg, allStable)
		return
	}
	setWeights(t, r, tg, w)
	s.wantWeights(t, r, tg, w)
	s.wantApplied(t, tg, allStable)
	s.wantMirrored(t, tg, 0.4)
	ensure(t, r, tg)
	s.wantWeights(t, r, tg, w)
	// With a cohort: the cohort reaches the canary, the rest is mirrored.
	w = traffic.Weights{Stable: 100, Mirror: 100, Cohort: beta}
	setWeights(t, r, tg, w)
	s.wantWeights(t, r, tg, w)
	s.wantRequestsApplied(t, tg, betaHeaders, allCanary)
	// Traffic on the canary: the mirror goes.
	setWeights(t, r, tg, traffic.Weights{Stable: 90, Canary: 10})
	s.wantWeights(t, r, tg, traffic.Weights{Stable: 90, Canary: 10})
	s.wantMirrored(t, tg, 0)
	setWeights(t, r, tg, w)
	release(t, r, tg)
	s.wantWeights(t, r, tg, allStable)
	s.wantMirrored(t, tg, 0)
}

func (s suite) invalidMirrors(t *testing.T) {
	r, tg := s.h.New(t)
	ensure(t, r, tg)
	for _, w := range []traffic.Weights{
		{Stable: 100, Mirror: 101},
		{Stable: 100, Mirror: -1},
		{Stable: 80, Canary: 20, Mirror: 10},
	} {
		if err := r.SetWeights(t.Context(), tg, w); err == nil || errors.Is(err, traffic.ErrConflict) {
			t.Errorf("SetWeights(%+v) = %v, want it rejected as invalid", w, err)
		}
	}
	s.wantWeights(t, r, tg, allStable)
}

func (s suite) baselineRoundTrip(t *testing.T) {
	r, tg := s.h.New(t)
	wantBaselineService(t, tg)
	ensure(t, r, tg)
	// A baseline beside a canary at an equal share, as a comparison
	// starts, up to everything on the two, and back down.
	steps := []traffic.Weights{
		{Stable: 80, Canary: 10, Baseline: 10},
		{Stable: 50, Canary: 25, Baseline: 25},
		{Canary: 50, Baseline: 50},
		{Stable: 60, Canary: 20, Baseline: 20},
	}
	for _, w := range steps {
		t.Run(split(w), func(t *testing.T) {
			setWeights(t, r, tg, w)
			s.wantWeights(t, r, tg, w)
			s.wantApplied(t, tg, w)
		})
	}
	ensure(t, r, tg)
	s.wantWeights(t, r, tg, steps[len(steps)-1])

	// A cohort and a sticky cookie reach the canary alone, never the
	// baseline; everyone else is split three ways.
	w := traffic.Weights{Stable: 80, Canary: 10, Baseline: 10, Cohort: beta, Sticky: pinned}
	setWeights(t, r, tg, w)
	s.wantWeights(t, r, tg, w)
	s.wantRequestsApplied(t, tg, betaHeaders, allCanary)
	s.wantRequestsApplied(t, tg, pinnedHeaders, allCanary)
	s.wantRequestsApplied(t, tg, earlierPin, w)

	// No baseline share: its destination goes, not left at zero.
	w = traffic.Weights{Stable: 90, Canary: 10}
	setWeights(t, r, tg, w)
	s.wantWeights(t, r, tg, w)
	s.wantApplied(t, tg, w)

	setWeights(t, r, tg, traffic.Weights{Stable: 80, Canary: 10, Baseline: 10})
	release(t, r, tg)
	s.wantWeights(t, r, tg, allStable)
	s.wantApplied(t, tg, allStable)
}

func (s suite) invalidBaselines(t *testing.T) {
	r, tg := s.h.New(t)
	wantBaselineService(t, tg)
	ensure(t, r, tg)
	valid := traffic.Weights{Stable: 80, Canary: 10, Baseline: 10}
	setWeights(t, r, tg, valid)
	for _, c := range []struct {
		name string
		w    traffic.Weights
	}{
		{"three shares adding up to 110", traffic.Weights{Stable: 80, Canary: 10, Baseline: 20}},
		{"three shares adding up to 95", traffic.Weights{Stable: 80, Canary: 10, Baseline: 5}},
		{"two shares adding up to 100 with a baseline beside them", traffic.Weights{Stable: 90, Canary: 10, Baseline: 10}},
		{"a negative baseline share", traffic.Weights{Stable: 100, Canary: 10, Baseline: -10}},
		{"a negative stable share beside a baseline", traffic.Weights{Stable: -10, Canary: 100, Baseline: 10}},
		{"a baseline share with a mirror", traffic.Weights{Stable: 90, Baseline: 10, Mirror: 10}},
	} {
		if err := r.SetWeights(t.Context(), tg, c.w); err == nil || errors.Is(err, traffic.ErrConflict) {
			t.Errorf("SetWeights with %s (%+v) = %v, want it rejected as invalid", c.name, c.w, err)
		}
	}
	// A target that names no baseline Service has nowhere to send a
	// baseline share: the caller is told which target, and why.
	none := tg
	none.Baseline = ""
	w := traffic.Weights{Stable: 70, Canary: 15, Baseline: 15}
	err := r.SetWeights(t.Context(), none, w)
	switch {
	case err == nil || errors.Is(err, traffic.ErrConflict):
		t.Errorf("SetWeights(%+v) on a target without a baseline Service = %v, want it rejected as invalid", w, err)
	case !strings.Contains(err.Error(), tg.String()) || !strings.Contains(err.Error(), "baseline"):
		t.Errorf("SetWeights(%+v) on a target without a baseline Service: %q does not name the target %s and its baseline", w, err, tg)
	}
	s.wantWeights(t, r, tg, valid)
	s.wantApplied(t, tg, valid)
}

// wantBaselineService stops a subtest whose harness gave a target no
// Baseline Service to route to.
func wantBaselineService(t *testing.T, tg traffic.Target) {
	t.Helper()
	if tg.Baseline == "" {
		t.Fatalf("the harness's target %s names no Baseline Service", tg)
	}
}

// wantMirrored checks the share of requests the mesh copies to the canary,
// when the harness can measure it.
func (s suite) wantMirrored(t *testing.T, tg traffic.Target, want float64) {
	t.Helper()
	if s.h.MirrorShare == nil {
		return
	}
	got := s.h.MirrorShare(t, tg)
	exact := want == 0 || want == 1
	if exact && got != want || !exact && math.Abs(got-want) > s.h.Tolerance {
		t.Errorf("mesh mirrors %.3f of requests to the canary, want %.2f", got, want)
	}
}

func (s suite) ensureKeepsWeights(t *testing.T) {
	r, tg := s.h.New(t)
	ensure(t, r, tg)
	w := traffic.Weights{Stable: 30, Canary: 70}
	setWeights(t, r, tg, w)
	ensure(t, r, tg)
	s.wantWeights(t, r, tg, w)
	s.wantApplied(t, tg, w)
}

func (s suite) release(t *testing.T) {
	r, tg := s.h.New(t)
	ensure(t, r, tg)
	setWeights(t, r, tg, traffic.Weights{Stable: 40, Canary: 60})
	for i := range 2 {
		if err := r.Release(t.Context(), tg); err != nil {
			t.Fatalf("Release #%d: %v", i+1, err)
		}
	}
	s.wantWeights(t, r, tg, allStable)
	s.wantApplied(t, tg, allStable)
}

func (s suite) afterRelease(t *testing.T) {
	r, tg := s.h.New(t)
	ensure(t, r, tg)
	setWeights(t, r, tg, traffic.Weights{Stable: 10, Canary: 90})
	release(t, r, tg)
	s.wantWeights(t, r, tg, allStable)

	w := traffic.Weights{Stable: 60, Canary: 40}
	setWeights(t, r, tg, w)
	s.wantWeights(t, r, tg, w)
	s.wantApplied(t, tg, w)
	release(t, r, tg)
	s.wantWeights(t, r, tg, allStable)
}

func (s suite) releaseNeverRouted(t *testing.T) {
	r, tg := s.h.New(t)
	release(t, r, tg)
	s.wantWeights(t, r, tg, allStable)
	s.wantApplied(t, tg, allStable)
}

func (s suite) concurrent(t *testing.T) {
	r, tg := s.h.New(t)
	ensure(t, r, tg)
	splits := []traffic.Weights{{Stable: 90, Canary: 10}, {Stable: 75, Canary: 25}, {Stable: 50, Canary: 50}, {Stable: 25, Canary: 75}}
	var wg sync.WaitGroup
	errs := make([]error, len(splits))
	for i, w := range splits {
		wg.Go(func() { errs[i] = r.SetWeights(t.Context(), tg, w) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("SetWeights(%+v) alongside others: %v", splits[i], err)
		}
	}
	got, err := r.Weights(t.Context(), tg)
	if err != nil {
		t.Fatalf("Weights: %v", err)
	}
	if !slices.Contains(splits, got) {
		t.Errorf("Weights = %+v after concurrent SetWeights, want one of %+v", got, splits)
	}
	s.wantApplied(t, tg, got)
}

func (s suite) incompleteTarget(t *testing.T) {
	r, valid := s.h.New(t)
	for _, c := range []struct {
		name string
		edit func(*traffic.Target)
	}{
		{"no namespace", func(tg *traffic.Target) { tg.Namespace = "" }},
		{"no name", func(tg *traffic.Target) { tg.Name = "" }},
		{"no host", func(tg *traffic.Target) { tg.Host = "" }},
		{"no stable Service", func(tg *traffic.Target) { tg.Stable = "" }},
		{"no canary Service", func(tg *traffic.Target) { tg.Canary = "" }},
		{"the canary is the stable Service", func(tg *traffic.Target) { tg.Canary = tg.Stable }},
		{"a route without a VirtualService", func(tg *traffic.Target) { tg.VirtualService, tg.Route = "", "primary" }},
		{"the baseline is the stable Service", func(tg *traffic.Target) { tg.Baseline = tg.Stable }},
		{"the baseline is the canary Service", func(tg *traffic.Target) { tg.Baseline = tg.Canary }},
	} {
		tg := valid
		c.edit(&tg)
		if err := r.Ensure(t.Context(), tg); err == nil {
			t.Errorf("Ensure with %s succeeded, want an error", c.name)
		}
		if err := r.SetWeights(t.Context(), tg, traffic.Weights{Stable: 50, Canary: 50}); err == nil {
			t.Errorf("SetWeights with %s succeeded, want an error", c.name)
		}
	}
	// Nothing was routed by the rejected calls.
	s.wantWeights(t, r, valid, allStable)
}

var (
	// beta is the cohort of requests with "x-tier: beta".
	beta        = traffic.Cohort{Name: "beta", Header: "x-tier", Exact: "beta"}
	betaHeaders = map[string]string{"x-tier": "beta"}
	// staff is a cookie cohort; the cookie is among others.
	staff        = traffic.CookieCohort("staff", "role", "staff")
	staffHeaders = map[string]string{"cookie": "session=1; role=staff; theme=dark"}
	// pinned is a sticky cookie, and pinnedHeaders carry it.
	pinned        = traffic.Sticky{Cookie: "fledge-canary", Value: "web-7d9f", MaxAge: 3600}
	pinnedHeaders = map[string]string{"cookie": "fledge-canary=web-7d9f; theme=dark"}
	// earlierPin is the cookie of an earlier canary, which pins nobody.
	earlierPin = map[string]string{"cookie": "fledge-canary=web-5c4b"}
)

func (s suite) cohortRoundTrip(t *testing.T) {
	r, tg := s.h.New(t)
	ensure(t, r, tg)
	w := traffic.Weights{Stable: 100, Cohort: beta}
	setWeights(t, r, tg, w)
	s.wantWeights(t, r, tg, w)
	s.wantApplied(t, tg, allStable)
	s.wantRequestsApplied(t, tg, betaHeaders, allCanary)
	s.wantRequestsApplied(t, tg, map[string]string{"x-tier": "beta2"}, allStable)

	w = traffic.Weights{Stable: 100, Cohort: staff}
	setWeights(t, r, tg, w)
	s.wantWeights(t, r, tg, w)
	s.wantRequestsApplied(t, tg, staffHeaders, allCanary)
	s.wantRequestsApplied(t, tg, map[string]string{"cookie": "role=staffer"}, allStable)
}

func (s suite) stickyRoundTrip(t *testing.T) {
	r, tg := s.h.New(t)
	ensure(t, r, tg)
	w := traffic.Weights{Stable: 80, Canary: 20, Sticky: pinned}
	setWeights(t, r, tg, w)
	s.wantWeights(t, r, tg, w)
	s.wantApplied(t, tg, w)
	s.wantRequestsApplied(t, tg, pinnedHeaders, allCanary)
	s.wantRequestsApplied(t, tg, earlierPin, w)
}

func (s suite) cohortChanges(t *testing.T) {
	r, tg := s.h.New(t)
	ensure(t, r, tg)
	setWeights(t, r, tg, traffic.Weights{Stable: 90, Canary: 10, Cohort: beta})
	w := traffic.Weights{Stable: 90, Canary: 10, Cohort: staff}
	setWeights(t, r, tg, w)
	s.wantWeights(t, r, tg, w)
	s.wantRequestsApplied(t, tg, staffHeaders, allCanary)
	s.wantRequestsApplied(t, tg, betaHeaders, w)

	w = traffic.Weights{Stable: 90, Canary: 10, Sticky: pinned}
	setWeights(t, r, tg, w)
	s.wantWeights(t, r, tg, w)
	s.wantRequestsApplied(t, tg, pinnedHeaders, allCanary)
	s.wantRequestsApplied(t, tg, staffHeaders, w)
}

func (s suite) invalidMatches(t *testing.T) {
	r, tg := s.h.New(t)
	ensure(t, r, tg)
	valid := traffic.Weights{Stable: 90, Canary: 10, Cohort: beta, Sticky: pinned}
	setWeights(t, r, tg, valid)
	for _, c := range []struct {
		name string
		edit func(*traffic.Weights)
	}{
		{"a cohort without a name", func(w *traffic.Weights) { w.Cohort.Name = "" }},
		{"a cohort named with capitals", func(w *traffic.Weights) { w.Cohort.Name = "Beta" }},
		{"a cohort without a header", func(w *traffic.Weights) { w.Cohort.Header = "" }},
		{"a cohort with an upper-case header", func(w *traffic.Weights) { w.Cohort.Header = "X-Tier" }},
		{"a cohort with both exact and regex", func(w *traffic.Weights) { w.Cohort.Regex = "beta|gamma" }},
		{"a cohort with neither exact nor regex", func(w *traffic.Weights) { w.Cohort.Exact = "" }},
		{"a cohort with a regex that is not RE2", func(w *traffic.Weights) { w.Cohort.Exact, w.Cohort.Regex = "", "(beta" }},
		{"a sticky cookie without a name", func(w *traffic.Weights) { w.Sticky.Cookie = "" }},
		{"a sticky cookie whose value has a semicolon", func(w *traffic.Weights) { w.Sticky.Value = "a;b" }},
		{"a sticky cookie without a max age", func(w *traffic.Weights) { w.Sticky.MaxAge = 0 }},
		{"a valid cohort with an invalid split", func(w *traffic.Weights) { w.Stable = 50 }},
	} {
		w := valid
		c.edit(&w)
		if err := r.SetWeights(t.Context(), tg, w); err == nil {
			t.Errorf("SetWeights with %s succeeded, want an error", c.name)
		}
	}
	s.wantWeights(t, r, tg, valid)
	s.wantApplied(t, tg, valid)
	s.wantRequestsApplied(t, tg, betaHeaders, allCanary)
}

func (s suite) ensureKeepsMatches(t *testing.T) {
	r, tg := s.h.New(t)
	ensure(t, r, tg)
	w := traffic.Weights{Stable: 70, Canary: 30, Cohort: staff, Sticky: pinned}
	setWeights(t, r, tg, w)
	ensure(t, r, tg)
	s.wantWeights(t, r, tg, w)
	s.wantRequestsApplied(t, tg, staffHeaders, allCanary)
	s.wantRequestsApplied(t, tg, pinnedHeaders, allCanary)
}

func (s suite) releaseMatches(t *testing.T) {
	r, tg := s.h.New(t)
	ensure(t, r, tg)
	setWeights(t, r, tg, traffic.Weights{Stable: 50, Canary: 50, Cohort: beta, Sticky: pinned})
	release(t, r, tg)
	s.wantWeights(t, r, tg, allStable)
	s.wantApplied(t, tg, allStable)
	s.wantRequestsApplied(t, tg, betaHeaders, allStable)
	s.wantRequestsApplied(t, tg, pinnedHeaders, allStable)

	// Routed again without them, the cohort and the cookie are gone, not
	// kept from before the release.
	w := traffic.Weights{Stable: 60, Canary: 40}
	setWeights(t, r, tg, w)
	s.wantWeights(t, r, tg, w)
	s.wantRequestsApplied(t, tg, betaHeaders, w)
	s.wantRequestsApplied(t, tg, pinnedHeaders, w)
}

func (s suite) wantWeights(t *testing.T, r traffic.Router, tg traffic.Target, want traffic.Weights) {
	t.Helper()
	got, err := r.Weights(t.Context(), tg)
	if err != nil {
		t.Fatalf("Weights: %v", err)
	}
	if got != want {
		t.Fatalf("Weights = %+v, want %+v", got, want)
	}
}

// wantApplied checks the split the mesh applies, when the harness can
// measure it.
func (s suite) wantApplied(t *testing.T, tg traffic.Target, want traffic.Weights) {
	t.Helper()
	s.wantRequestsApplied(t, tg, nil, want)
}

// wantRequestsApplied checks the split the mesh applies to requests
// carrying headers, when the harness can measure it: each of the target's
// Services gets its share, exactly at 0 and 100 and within the tolerance
// between, and no other Service gets any.
func (s suite) wantRequestsApplied(t *testing.T, tg traffic.Target, headers map[string]string, want traffic.Weights) {
	t.Helper()
	if s.h.Shares == nil {
		return
	}
	got := s.h.Shares(t, tg, headers)
	wantShares := map[string]int32{tg.Stable: want.Stable, tg.Canary: want.Canary}
	if tg.Baseline != "" {
		wantShares[tg.Baseline] = want.Baseline
	}
	requests := "requests"
	if headers != nil {
		requests = fmt.Sprintf("requests with %v", headers)
	}
	for svc, share := range got {
		if _, ok := wantShares[svc]; !ok && share > 0 {
			t.Errorf("mesh sends %.3f of %s to %s, which is none of the target's Services", share, requests, svc)
		}
	}
	for _, svc := range []string{tg.Stable, tg.Canary, tg.Baseline} {
		weight, ok := wantShares[svc]
		if !ok {
			continue
		}
		wantShare := float64(weight) / 100
		exact := weight == 0 || weight == 100
		if exact && got[svc] != wantShare || !exact && math.Abs(got[svc]-wantShare) > s.h.Tolerance {
			t.Errorf("mesh sends %.3f of %s to %s after weights %s, want %.2f (±%.2f between the ends)",
				got[svc], requests, svc, split(want), wantShare, s.h.Tolerance)
		}
	}
	t.Logf("mesh sends %s after weights %s: %v", requests, split(want), got)
}

// split spells a split for messages: stable/canary, and /baseline when
// it has a share.
func split(w traffic.Weights) string {
	if w.Baseline != 0 {
		return fmt.Sprintf("%d/%d/%d", w.Stable, w.Canary, w.Baseline)
	}
	return fmt.Sprintf("%d/%d", w.Stable, w.Canary)
}

func ensure(t *testing.T, r traffic.Router, tg traffic.Target) {
	t.Helper()
	if err := r.Ensure(t.Context(), tg); err != nil {
		t.Fatalf("Ensure: %v", err)
	}
}

func setWeights(t *testing.T, r traffic.Router, tg traffic.Target, w traffic.Weights) {
	t.Helper()
	if err := r.SetWeights(t.Context(), tg, w); err != nil {
		t.Fatalf("SetWeights(%+v): %v", w, err)
	}
}

func release(t *testing.T, r traffic.Router, tg traffic.Target) {
	t.Helper()
	if err := r.Release(t.Context(), tg); err != nil {
		t.Fatalf("Release: %v", err)
	}
}
