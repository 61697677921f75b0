package mesh

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	networking "istio.io/api/networking/v1alpha3"
)

// mirrorV2 is the demo with v2's pods annotated, a VirtualService sending
// users to v1 and mirroring all of their requests to v2.
func mirrorV2(annotations map[string]string) snapshot {
	return newDemo(annotated(annotations)).snapshot(virtualService("demo", "app", 0, []string{"app"}, &networking.HTTPRoute{
		Route:  []*networking.HTTPRouteDestination{to("app", "v1", 0)},
		Mirror: &networking.Destination{Host: "app", Subset: "v2"},
	}))
}

// binomialBounds are the counts of successes in n draws of probability p
// within z standard deviations of the mean. Routing draws from a seeded
// source, so a test's count is fixed; the bounds say how far from p a
// correct implementation may land by chance (z=4: one seed in 15,000), so
// that a count outside them means the rate is wrong, not unlucky.
func binomialBounds(n int, p, z float64) (lo, hi int) {
	mean, sd := float64(n)*p, math.Sqrt(float64(n)*p*(1-p))
	return int(math.Floor(mean - z*sd)), int(math.Ceil(mean + z*sd))
}

func TestStableAndAHealthyCanaryAnswerARequestWithTheSameBody(t *testing.T) {
	tbl, problems := buildTable(mirrorV2(nil))
	if len(problems) > 0 {
		t.Fatalf("problems: %v", problems)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	bodies := map[[32]byte]string{}
	for i := range 200 {
		req := request("app", nil)
		req.User, req.Path = fmt.Sprintf("user-%d", i%20), fmt.Sprintf("/items/%d", i%7)
		out := tbl.route(&req, rng)
		if len(out.shadows) != 1 {
			t.Fatalf("%d shadows, want 1", len(out.shadows))
		}
		user, copied := out.resp, out.shadows[0].resp
		if user.Workload != "app-v1" || copied.Workload != "app-v2" {
			t.Fatalf("answered by %s and %s, want app-v1 and app-v2", user.Workload, copied.Workload)
		}
		if user.BodyHash != copied.BodyHash || user.BodyLen != copied.BodyLen {
			t.Fatalf("%s %s for %s: v1 answered %x (%d bytes), v2 the copy %x (%d bytes), want the same body",
				req.Method, req.Path, req.User, user.BodyHash[:4], user.BodyLen, copied.BodyHash[:4], copied.BodyLen)
		}
		if user.BodyLen < minContentLen {
			t.Fatalf("a body of %d bytes, want at least %d", user.BodyLen, minContentLen)
		}
		key := req.Path + " " + req.User
		if other, ok := bodies[user.BodyHash]; ok && other != key {
			t.Fatalf("%s and %s have the same body", key, other)
		}
		bodies[user.BodyHash] = key
	}
	if len(bodies) != 7*20 {
		t.Errorf("%d different bodies, want one per path and user (140)", len(bodies))
	}
}

func TestBodyDependsOnMethodHostPathAndUserAlone(t *testing.T) {
	base := request("app", nil)
	body := func(f func(*Request)) [32]byte {
		r := base
		f(&r)
		h, _ := requestBody(&r, r.Host, false)
		return h
	}
	same := body(func(*Request) {})
	for name, f := range map[string]func(*Request){
		"another method": func(r *Request) { r.Method = "OPTIONS" },
		"another host":   func(r *Request) { r.Host = "app.demo" },
		"another path":   func(r *Request) { r.Path = "/other" },
		"another query":  func(r *Request) { r.Path = "/?page=2" },
		"another user":   func(r *Request) { r.User = "user-1" },
	} {
		if body(f) == same {
			t.Errorf("%s: the same body, want another", name)
		}
	}
	for name, f := range map[string]func(*Request){
		"a mirrored copy's host":                  func(r *Request) { r.Host = ShadowHost(r.Host) },
		"other headers":                           func(r *Request) { r.Headers = map[string]string{"x-user-tier": "beta"} },
		"another client":                          func(r *Request) { r.Client, r.SourceNamespace = "other", "elsewhere" },
		"gRPC rather than HTTP (same OK content)": func(r *Request) { r.Protocol = GRPC },
	} {
		if body(f) != same {
			t.Errorf("%s: another body, want the same", name)
		}
	}
	if h, n := requestBody(&Request{Method: "HEAD", Host: "app", Path: "/"}, "app", true); h != emptyBody || n != 0 {
		t.Errorf("HEAD: %x, %d bytes, want no body", h[:4], n)
	}
	if got, want := unshadow("app.demo-shadow:8080"), "app.demo:8080"; got != want {
		t.Errorf("unshadow = %q, want %q", got, want)
	}
}

// TestBodyDiffRateMakesItsShareOfAnswersDiffer: a canary with
// body-diff-rate 0.05 answers about 5% of the copies with another body,
// of another length, and the rest with stable's.
func TestBodyDiffRateMakesItsShareOfAnswersDiffer(t *testing.T) {
	tbl, problems := buildTable(mirrorV2(map[string]string{annotationBodyDiffRate: "0.05"}))
	if len(problems) > 0 {
		t.Fatalf("problems: %v", problems)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	const n = 4000
	differ := 0
	for i := range n {
		req := request("app", nil)
		req.User = fmt.Sprintf("user-%d", i%100)
		out := tbl.route(&req, rng)
		user, copied := out.resp, out.shadows[0].resp
		if user.BodyHash == copied.BodyHash {
			if user.BodyLen != copied.BodyLen {
				t.Fatalf("the same hash with lengths %d and %d", user.BodyLen, copied.BodyLen)
			}
			continue
		}
		differ++
		if copied.BodyLen == user.BodyLen || copied.Code != 200 {
			t.Fatalf("a differing body of %d bytes (stable's %d), code %d: want a 200 of another length", copied.BodyLen, user.BodyLen, copied.Code)
		}
	}
	if lo, hi := binomialBounds(n, 0.05, 4); differ < lo || differ > hi {
		t.Errorf("%d of %d bodies differ, want %d..%d (5%%)", differ, n, lo, hi)
	}
}

func TestErrorAnswersCarryAnErrorPageNamingThePod(t *testing.T) {
	d := newDemo(annotated(map[string]string{annotationErrorRate: "1"}))
	d.v2 = append(d.v2, deploymentPod("demo", "app-v2", "bbb222", 1, map[string]string{"app": "app", "version": "v2"}, annotated(map[string]string{annotationErrorRate: "1"})))
	tbl, _ := buildTable(d.snapshot(virtualService("demo", "app", 0, []string{"app"}, httpRule(nil, to("app", "v2", 0)))))
	rng := rand.New(rand.NewPCG(1, 1))
	req := request("app", nil)
	a, b := tbl.route(&req, rng).resp, tbl.route(&req, rng).resp
	if a.Code != 500 || b.Code != 500 || a.Pod == b.Pod {
		t.Fatalf("answers %d from %s and %d from %s, want two errors from two pods", a.Code, a.Pod, b.Code, b.Pod)
	}
	if a.BodyHash == b.BodyHash || a.BodyLen < minErrorLen || b.BodyLen < minErrorLen {
		t.Errorf("error pages %x (%d bytes) and %x (%d bytes), want two different pages", a.BodyHash[:4], a.BodyLen, b.BodyHash[:4], b.BodyLen)
	}
	healthy, _ := requestBody(&req, req.Host, false)
	if a.BodyHash == healthy {
		t.Error("an error page is the successful answer's body")
	}

	// Envoy's own replies depend on their status and flags alone.
	nc := tbl.route(&Request{Host: "nowhere", Method: "GET", Path: "/", Protocol: HTTP}, rng).resp
	nc2 := tbl.route(&Request{Host: "elsewhere", Method: "GET", Path: "/x", Protocol: HTTP}, rng).resp
	if nc.Flags != "NC" || nc.BodyHash != nc2.BodyHash || nc.BodyLen == 0 {
		t.Errorf("two 503 NC replies: %x and %x, want one body", nc.BodyHash[:4], nc2.BodyHash[:4])
	}
	grpc := Request{Host: "nowhere", Method: "POST", Path: "/", Protocol: GRPC}
	if r := tbl.route(&grpc, rng).resp; r.BodyHash != emptyBody || r.BodyLen != 0 {
		t.Errorf("a gRPC local reply has a body of %d bytes, want none (trailers only)", r.BodyLen)
	}
}

func TestBadBodyDiffRatesAreProblems(t *testing.T) {
	for _, value := range []string{"-0.1", "1.5", "abc", "NaN", "", "5%"} {
		t.Run(value, func(t *testing.T) {
			b, problems := parseBehaviour(map[string]string{annotationBodyDiffRate: value})
			if b.bodyDiffRate != 0 {
				t.Errorf("bodyDiffRate = %v, want 0", b.bodyDiffRate)
			}
			want := fmt.Sprintf("%q is not a number in [0,1]; ignored, the pod answers every request with the body any revision answers it with", value)
			if len(problems) != 1 || problems[0].Annotation != annotationBodyDiffRate || problems[0].Message != want {
				t.Errorf("problems = %v, want one: %s", problems, want)
			}
		})
	}
	_, problems := buildTable(mirrorV2(map[string]string{annotationBodyDiffRate: "2"}))
	if len(problems) != 1 || problems[0].Name != v2Pod0 || !strings.Contains(problems[0].Field, annotationBodyDiffRate) {
		t.Errorf("table problems %v, want v2's annotation named", problems)
	}
}

func TestAVariantMayHaveABodyDiffRateOfItsOwn(t *testing.T) {
	b, problems := parseBehaviour(map[string]string{
		annotationFlagSource:                          "flags/flags.json",
		annotationFlag:                                "new-checkout",
		annotationBodyDiffRate:                        "0.01",
		annotationVariantPrefix + "on.body-diff-rate": "0.5",
	})
	if len(problems) > 0 {
		t.Fatal(problems)
	}
	if b.bodyDiffRate != 0.01 || b.flag.variants["on"].bodyDiffRate != 0.5 {
		t.Errorf("body-diff-rate %v, variant on's %v, want 0.01 and 0.5", b.bodyDiffRate, b.flag.variants["on"].bodyDiffRate)
	}
}

// Giving an answer its body allocates nothing: every request pays for it.
func TestABodyAllocatesNothing(t *testing.T) {
	req := request("app-shadow:8080", nil)
	req.Path = "/catalog/items/12345?page=3&sort=price"
	if n := testing.AllocsPerRun(100, func() {
		requestBody(&req, req.Host, true)
		errorPage(&req, req.Host, v1Pod0, 503)
		localReplyBody(503, "UH")
	}); n != 0 {
		t.Errorf("%v allocations per answer, want 0", n)
	}
}
