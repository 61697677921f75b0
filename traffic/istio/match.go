package istio

import (
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"
	networkingv1 "istio.io/api/networking/v1"

	"github.com/fledgehq/fledge/traffic"
)

// Match routes are the http routes fledge puts right before the route it
// splits: Istio takes the first route that matches, so a request of the
// cohort, or one carrying the sticky cookie, reaches the canary whatever
// the split says, while every route the owner put earlier still wins.
//
// A match route is a copy of the split route, so that whatever the split
// route does to a request (rewrites, timeouts, retries, header rules, CORS,
// faults) it also does to the cohort's requests. Only three fields differ:
// its name; its match, which is each of the split route's match blocks with
// one more header condition ANDed in (a block with that condition alone when
// the split route matches everything); and its route, the canary
// destination alone. Never the baseline's: a baseline is compared with
// the canary on an equal share of the split, and an audience sent to the
// canary is no part of that comparison.
const (
	// cohortRoutePrefix, then the cohort's name, names the cohort's route.
	cohortRoutePrefix = "fledge-cohort-"
	// stickyRouteName names the sticky cookie's route.
	stickyRouteName = "fledge-sticky"
	cookieHeader    = "cookie"
	setCookieHeader = "set-cookie"
)

// matchPrefix is what the names of a split route's match routes start with:
// "<name>-", so that two targets splitting routes of one VirtualService do
// not collide, or nothing for an unnamed route and for the generated
// VirtualService, whose match routes are simply "fledge-cohort-<name>" and
// "fledge-sticky".
func matchPrefix(splitRoute string) string {
	if splitRoute == "" {
		return ""
	}
	return splitRoute + "-"
}

// isMatchRoute reports whether name is a match route's, for the split route
// whose match routes are named with prefix.
func isMatchRoute(name, prefix string) bool {
	return name == prefix+stickyRouteName || strings.HasPrefix(name, prefix+cohortRoutePrefix)
}

// matchRoutes returns the match routes of split route r for w, in order:
// the cohort's, then the sticky cookie's. canary is the canary destination
// to copy (see copyDestination). A problem is about r: one of its match
// blocks already matches the header that would be ANDed in, and a block
// cannot match one header twice.
func matchRoutes(r *networkingv1.HTTPRoute, prefix string, canary *networkingv1.HTTPRouteDestination, w traffic.Weights) ([]*networkingv1.HTTPRoute, *problem) {
	var out []*networkingv1.HTTPRoute
	if !w.Cohort.IsZero() {
		what := fmt.Sprintf("cohort %q", w.Cohort.Name)
		route, p := matchRoute(r, prefix+cohortRoutePrefix+w.Cohort.Name, what, w.Cohort.Header, cohortMatch(w.Cohort), canary)
		if p != nil {
			return nil, p
		}
		out = append(out, route)
	}
	if !w.Sticky.IsZero() {
		// The sticky route sets the cookie too: it renews Max-Age for as
		// long as the user keeps coming back.
		route, p := matchRoute(r, prefix+stickyRouteName, "sticky cookie", cookieHeader, stickyMatch(w.Sticky), withSetCookie(canary, w.Sticky))
		if p != nil {
			return nil, p
		}
		out = append(out, route)
	}
	return out, nil
}

func matchRoute(r *networkingv1.HTTPRoute, name, what, header string, m *networkingv1.StringMatch, dest *networkingv1.HTTPRouteDestination) (*networkingv1.HTTPRoute, *problem) {
	out := proto.Clone(r).(*networkingv1.HTTPRoute)
	out.Name = name
	out.Route = []*networkingv1.HTTPRouteDestination{proto.Clone(dest).(*networkingv1.HTTPRouteDestination)}
	if len(out.Match) == 0 {
		out.Match = []*networkingv1.HTTPMatchRequest{{}}
	}
	for i, block := range out.Match {
		for h := range block.GetHeaders() {
			if strings.EqualFold(h, header) {
				return nil, &problem{fmt.Sprintf(".match[%d].headers.%s", i, h),
					fmt.Sprintf("already matches header %q, so fledge cannot AND the %s's condition on it into this match block", h, what)}
			}
		}
		if block.Headers == nil {
			block.Headers = map[string]*networkingv1.StringMatch{}
		}
		block.Headers[header] = proto.Clone(m).(*networkingv1.StringMatch)
	}
	return out, nil
}

func cohortMatch(c traffic.Cohort) *networkingv1.StringMatch {
	if c.Regex != "" {
		return &networkingv1.StringMatch{MatchType: &networkingv1.StringMatch_Regex{Regex: c.Regex}}
	}
	return &networkingv1.StringMatch{MatchType: &networkingv1.StringMatch_Exact{Exact: c.Exact}}
}

func stickyMatch(s traffic.Sticky) *networkingv1.StringMatch {
	return &networkingv1.StringMatch{MatchType: &networkingv1.StringMatch_Regex{Regex: traffic.CookieRegex(s.Cookie, s.Value)}}
}

// withSetCookie returns a copy of d whose responses set the sticky cookie,
// with d's own header rules kept. A zero s leaves d as it is.
func withSetCookie(d *networkingv1.HTTPRouteDestination, s traffic.Sticky) *networkingv1.HTTPRouteDestination {
	if s.IsZero() {
		return d
	}
	out := proto.Clone(d).(*networkingv1.HTTPRouteDestination)
	if out.Headers == nil {
		out.Headers = &networkingv1.Headers{}
	}
	if out.Headers.Response == nil {
		out.Headers.Response = &networkingv1.Headers_HeaderOperations{}
	}
	if out.Headers.Response.Add == nil {
		out.Headers.Response.Add = map[string]string{}
	}
	out.Headers.Response.Add[setCookieHeader] = s.SetCookie()
	return out
}

// setCookieProblem refuses a stable destination whose responses already
// add a Set-Cookie: its canary copy would need two values under one key of
// headers.response.add, a map. Replacing the owner's would lose a cookie
// their app relies on, so a person must move it (to headers.response.set,
// or the route's own header rules).
func setCookieProblem(dests []*networkingv1.HTTPRouteDestination, s services) *problem {
	for i, d := range dests {
		if s.kind(d.GetDestination().GetHost()) != stableHost {
			continue
		}
		for h := range d.GetHeaders().GetResponse().GetAdd() {
			if strings.EqualFold(h, setCookieHeader) {
				return &problem{fmt.Sprintf(".route[%d].headers.response.add.%s", i, h),
					"already adds a cookie, so the canary's copy of this destination cannot also add fledge's sticky cookie"}
			}
		}
	}
	return nil
}

// readMatchRoutes reads the cohort and the sticky cookie from the match
// routes of split route r (routes, in the order found), from their names,
// the header condition each adds to r's match and the sticky route's
// Set-Cookie. It does not check their other fields: see sameMatchRoutes.
// A problem is about routes[i].
func readMatchRoutes(routes []*networkingv1.HTTPRoute, r *networkingv1.HTTPRoute, prefix string) (traffic.Cohort, traffic.Sticky, int, *problem) {
	var cohort traffic.Cohort
	var sticky traffic.Sticky
	for i, route := range routes {
		header, m, p := addedHeader(route, r.GetMatch())
		if p != nil {
			return traffic.Cohort{}, traffic.Sticky{}, i, p
		}
		field := ".match[0].headers." + header
		switch name := route.GetName(); {
		case name == prefix+stickyRouteName:
			if !sticky.IsZero() {
				return traffic.Cohort{}, traffic.Sticky{}, i, &problem{".name", "a second sticky cookie route"}
			}
			if sticky, p = readSticky(route, header, m, field); p != nil {
				return traffic.Cohort{}, traffic.Sticky{}, i, p
			}
		case strings.HasPrefix(name, prefix+cohortRoutePrefix):
			if !cohort.IsZero() || !sticky.IsZero() {
				return traffic.Cohort{}, traffic.Sticky{}, i, &problem{".name", "a second cohort route, or one after the sticky cookie's; fledge writes one cohort route, then the sticky cookie's"}
			}
			cohort = traffic.Cohort{Name: strings.TrimPrefix(name, prefix+cohortRoutePrefix), Header: header}
			switch t := m.GetMatchType().(type) {
			case *networkingv1.StringMatch_Exact:
				cohort.Exact = t.Exact
			case *networkingv1.StringMatch_Regex:
				cohort.Regex = t.Regex
			default:
				return traffic.Cohort{}, traffic.Sticky{}, i, &problem{field, "is not an exact or a regex match, which is all a cohort is"}
			}
			if err := cohort.Validate(); err != nil {
				return traffic.Cohort{}, traffic.Sticky{}, i, &problem{"", err.Error()}
			}
		default:
			return traffic.Cohort{}, traffic.Sticky{}, i, &problem{".name", "is not the name of a cohort or sticky cookie route"}
		}
	}
	return cohort, sticky, 0, nil
}

func readSticky(route *networkingv1.HTTPRoute, header string, m *networkingv1.StringMatch, field string) (traffic.Sticky, *problem) {
	cookie, value, ok := parseCookieRegex(m.GetRegex())
	if header != cookieHeader || !ok {
		return traffic.Sticky{}, &problem{field, "is not the cookie header regex fledge writes for a sticky cookie"}
	}
	dests := route.GetRoute()
	if len(dests) != 1 {
		return traffic.Sticky{}, &problem{".route", fmt.Sprintf("%d destinations; a sticky cookie route has the canary's alone", len(dests))}
	}
	set := dests[0].GetHeaders().GetResponse().GetAdd()[setCookieHeader]
	s := traffic.Sticky{Cookie: cookie, Value: value}
	if s.MaxAge, ok = parseMaxAge(set, s); !ok {
		return traffic.Sticky{}, &problem{".route[0].headers.response.add." + setCookieHeader, fmt.Sprintf("%q is not the Set-Cookie of sticky cookie %s=%s", set, cookie, value)}
	}
	if err := s.Validate(); err != nil {
		return traffic.Sticky{}, &problem{"", err.Error()}
	}
	return s, nil
}

// addedHeader finds the header condition a match route adds to the match
// of the split route it copies: the one header of its first block that the
// split route's first block does not match.
func addedHeader(route *networkingv1.HTTPRoute, base []*networkingv1.HTTPMatchRequest) (string, *networkingv1.StringMatch, *problem) {
	blocks := route.GetMatch()
	if len(blocks) == 0 {
		return "", nil, &problem{".match", "is empty; a match route matches a header"}
	}
	var known map[string]*networkingv1.StringMatch
	if len(base) > 0 {
		known = base[0].GetHeaders()
	}
	added := ""
	for h := range blocks[0].GetHeaders() {
		if _, ok := known[h]; ok {
			continue
		}
		if added != "" {
			return "", nil, &problem{".match[0].headers", "matches more than one header the split route does not"}
		}
		added = h
	}
	if added == "" {
		return "", nil, &problem{".match[0].headers", "matches no header the split route does not"}
	}
	return added, blocks[0].GetHeaders()[added], nil
}

// parseCookieRegex inverts traffic.CookieRegex for the cookie names and
// values it accepts.
func parseCookieRegex(re string) (name, value string, ok bool) {
	// The regex around name=value, taken from CookieRegex itself so that
	// the two cannot drift apart.
	before, after, _ := strings.Cut(traffic.CookieRegex("\x00", "\x00"), "\x00=\x00")
	pair, okBefore := strings.CutPrefix(re, before)
	pair, okAfter := strings.CutSuffix(pair, after)
	if !okBefore || !okAfter {
		return "", "", false
	}
	name, value, ok = strings.Cut(pair, "=")
	name, value = unquoteMeta(name), unquoteMeta(value)
	return name, value, ok && traffic.CookieRegex(name, value) == re
}

// unquoteMeta undoes regexp.QuoteMeta, which escapes with a backslash.
func unquoteMeta(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// parseMaxAge reads the Max-Age of s's Set-Cookie value v, and whether v
// is exactly what s.SetCookie writes with it.
func parseMaxAge(v string, s traffic.Sticky) (int32, bool) {
	_, rest, ok := strings.Cut(v, "Max-Age=")
	if !ok {
		return 0, false
	}
	digits, _, _ := strings.Cut(rest, ";")
	age, err := strconv.ParseInt(digits, 10, 32)
	if err != nil {
		return 0, false
	}
	s.MaxAge = int32(age)
	return s.MaxAge, s.SetCookie() == v
}

// sameMatchRoutes returns the index of the first of routes that is not
// what matchRoutes writes (want), and its first field that differs; -1
// when all are. Reading the cohort from a route is not enough: one left
// behind when its split route was edited (a new timeout, say) would treat
// the cohort differently from everyone else.
func sameMatchRoutes(routes, want []*networkingv1.HTTPRoute) (int, string) {
	for i, route := range routes {
		if i >= len(want) {
			return i, ""
		}
		if !proto.Equal(route, want[i]) {
			return i, differentField(route, want[i])
		}
	}
	if len(want) > len(routes) {
		return len(routes), ""
	}
	return -1, ""
}

// differentField names the first top-level field of a and b that differs,
// as ".field" in the VirtualService's own spelling, or "" if none does.
func differentField(a, b proto.Message) string {
	ma, mb := a.ProtoReflect(), b.ProtoReflect()
	fields := ma.Descriptor().Fields()
	for i := range fields.Len() {
		f := fields.Get(i)
		if ma.Has(f) != mb.Has(f) || ma.Has(f) && !ma.Get(f).Equal(mb.Get(f)) {
			return "." + f.JSONName()
		}
	}
	return ""
}
