package mesh

import (
	"testing"

	networking "istio.io/api/networking/v1alpha3"
)

// TestStickyCanaryCookie checks the loop a cookie-based sticky canary
// relies on: a route sets a cookie, the client's jar replays it, and a
// cookie regex route then keeps that user on the canary.
func TestStickyCanaryCookie(t *testing.T) {
	sticky := virtualService("demo", "app", 0, []string{"app"},
		httpRule(headerIs("cookie", regex(`(.*; )?canary=yes(;.*)?`)), to("app", "v2", 0)),
		httpRule(nil,
			to("app", "v1", 50),
			&networking.HTTPRouteDestination{
				Destination: &networking.Destination{Host: "app", Subset: "v2"},
				Weight:      50,
				Headers: &networking.Headers{Response: &networking.Headers_HeaderOperations{
					Add: map[string]string{"set-cookie": "canary=yes; Path=/"},
				}},
			}),
	)
	tbl, problems := buildTable(newDemo().snapshot(sticky))
	if len(problems) > 0 {
		t.Fatalf("unexpected problems: %v", problems)
	}
	c, err := Client{Name: "web", Namespace: "demo", Host: "app", RPS: 1, Users: 50,
		Segments: []Segment{{Share: 1, Cookies: map[string]string{"session": "s1"}}}}.normalized()
	if err != nil {
		t.Fatal(err)
	}
	gen := newGenerator(c, 7)

	cookied := map[string]bool{} // users who were given the cookie
	var replayed, toV1 int
	for range 2000 {
		req := gen.next()
		resp := tbl.route(&req, gen.rng).resp
		if cookied[req.User] {
			replayed++
			if resp.Workload != "app-v2" {
				t.Fatalf("user %s had the canary cookie but reached %s (cookie header %q)", req.User, resp.Workload, req.Headers["cookie"])
			}
		}
		if resp.Workload == "app-v1" {
			toV1++
		}
		if resp.SetCookies["canary"] == "yes" {
			cookied[req.User] = true
		}
		gen.remember(&req, &resp)
	}
	// Without both, the loop above proves nothing.
	if replayed == 0 || toV1 == 0 {
		t.Errorf("%d requests replayed the canary cookie and %d reached v1; want both > 0", replayed, toV1)
	}
}
