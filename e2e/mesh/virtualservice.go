package mesh

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	networking "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
)

// meshGateway is the reserved gateway name for sidecar traffic.
const meshGateway = "mesh"

// Fields of the VirtualService API, by proto name, and what the emulator
// does with them. A field that no function here accepts (including fields
// added to the API later) makes the whole VirtualService uninterpretable:
// routing it partially would be a guess.

// vsFieldKnown: tcp and tls routes never apply to the HTTP traffic the
// emulator generates, and exportTo visibility is not modelled.
func vsFieldKnown(name string) bool {
	switch name {
	case "hosts", "gateways", "http", "tcp", "tls", "export_to":
		return true
	}
	return false
}

// routeFieldKnown accepts the HTTPRoute fields that are emulated and those
// that change retries, timing, side traffic or request contents rather than
// which pod answers, which are ignored (see doc.go).
func routeFieldKnown(name string) bool {
	switch name {
	case "name", "match", "route", "redirect", "direct_response", "headers",
		"rewrite", "timeout", "retries", "fault", "mirror", "mirrors",
		"mirror_percent", "mirror_percentage", "cors_policy":
		return true
	}
	return false
}

func matchFieldKnown(name string) bool {
	switch name {
	case "name", "uri", "method", "authority", "headers", "without_headers",
		"query_params", "ignore_uri_case", "source_labels", "source_namespace", "gateways":
		return true
	}
	return false
}

// destinationFieldKnown accepts the HTTPRouteDestination fields. Inside
// Destination, the port selects a Service port, which does not change the
// pods behind it, so it is not looked at.
func destinationFieldKnown(name string) bool {
	switch name {
	case "destination", "weight", "headers":
		return true
	}
	return false
}

// unsupportedFields lists the fields set in m that known rejects, by JSON
// name, in field number order.
func unsupportedFields(m proto.Message, known func(protoName string) bool) []string {
	var fields []protoreflect.FieldDescriptor
	m.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		if !known(string(fd.Name())) {
			fields = append(fields, fd)
		}
		return true
	})
	slices.SortFunc(fields, func(x, y protoreflect.FieldDescriptor) int { return cmp.Compare(x.Number(), y.Number()) })
	names := make([]string, len(fields))
	for i, fd := range fields {
		names[i] = fd.JSONName()
	}
	return names
}

// routeAction is what a route does with a request it matched.
type routeAction uint8

const (
	actionForward routeAction = iota
	actionDirectResponse
	actionRedirect
)

type httpRoute struct {
	matches     []matchBlock // ORed; empty matches everything
	action      routeAction
	status      int // for direct responses and redirects
	dests       []weightedDest
	totalWeight uint64
	cookies     map[string]string // route-level set-cookie
	// mirrors are the destinations a share of the route's requests is
	// copied to (Istio's mirror and mirrorPercentage, or mirrors).
	mirrors []mirrorDest
}

// mirrorDest is one mirror of a route: target gets a copy of percent% of
// its requests.
type mirrorDest struct {
	target  *target
	percent float64
}

type weightedDest struct {
	weight uint64
	target *target
	// cookies are the route-level and destination-level set-cookie
	// headers, merged at build time.
	cookies map[string]string
}

// uninterpretable is what compile steps return when a VirtualService
// cannot be routed faithfully: the field to blame and why.
type uninterpretable struct {
	field, message string
}

func unsupported(field string) *uninterpretable {
	return &uninterpretable{field, "not supported by the mesh emulator"}
}

// addVirtualServices compiles the VirtualServices that apply to sidecars
// and lets each claim its hosts, oldest first.
func (b *builder) addVirtualServices(vss []*networkingv1.VirtualService) {
	vss = slices.Clone(vss)
	slices.SortFunc(vss, func(x, y *networkingv1.VirtualService) int { return olderFirst(&x.ObjectMeta, &y.ObjectMeta) })
	claimedBy := map[string]*networkingv1.VirtualService{}
	for _, vs := range vss {
		spec := &vs.Spec
		if g := spec.GetGateways(); len(g) > 0 && !slices.Contains(g, meshGateway) {
			continue // gateway-only configuration; sidecars never see it
		}
		before := len(b.problems)
		routes, err := b.compileVirtualService(vs)
		if err != nil {
			// Warnings about parts of a VirtualService that is skipped
			// anyway would only distract from the reason it is skipped.
			b.problems = b.problems[:before]
			b.problem(kindVirtualService, &vs.ObjectMeta, err.field,
				"%s; the VirtualService is ignored and its hosts route straight to their Services", err.message)
			continue
		}
		if len(routes) == 0 {
			continue // no HTTP routes: HTTP traffic goes to the Service, as in Istio
		}
		for i, h := range spec.GetHosts() {
			host := qualifyHost(h, vs.Namespace)
			if prev, ok := claimedBy[host]; ok {
				if prev != vs {
					b.problem(kindVirtualService, &vs.ObjectMeta, fmt.Sprintf("spec.hosts[%d]", i),
						"host %s is also claimed by virtualservice %s/%s, which is older; this one is ignored for that host",
						host, prev.Namespace, prev.Name)
				}
				continue
			}
			claimedBy[host] = vs
			vh := &virtualHost{host: host, routes: routes}
			if isWildcard(host) {
				b.t.wildcards = append(b.t.wildcards, vh)
			} else {
				b.t.vhosts[host] = vh
			}
		}
	}
	// Envoy picks the longest matching wildcard domain; "*" comes last.
	slices.SortStableFunc(b.t.wildcards, func(x, y *virtualHost) int { return cmp.Compare(len(y.host), len(x.host)) })
}

func (b *builder) compileVirtualService(vs *networkingv1.VirtualService) ([]*httpRoute, *uninterpretable) {
	spec := &vs.Spec
	if f := unsupportedFields(spec, vsFieldKnown); len(f) > 0 {
		return nil, unsupported("spec." + f[0])
	}
	if len(spec.GetHosts()) == 0 {
		return nil, &uninterpretable{"spec.hosts", "no hosts"}
	}
	for i, h := range spec.GetHosts() {
		if !validHostPattern(h) {
			return nil, &uninterpretable{fmt.Sprintf("spec.hosts[%d]", i), fmt.Sprintf("%q is not a host or a leading-wildcard pattern", h)}
		}
	}
	routes := make([]*httpRoute, 0, len(spec.GetHttp()))
	for i, hr := range spec.GetHttp() {
		r, err := b.compileRoute(vs, fmt.Sprintf("spec.http[%d]", i), hr)
		if err != nil {
			return nil, err
		}
		routes = append(routes, r)
	}
	return routes, nil
}

func (b *builder) compileRoute(vs *networkingv1.VirtualService, field string, hr *networking.HTTPRoute) (*httpRoute, *uninterpretable) {
	if f := unsupportedFields(hr, routeFieldKnown); len(f) > 0 {
		return nil, unsupported(field + "." + f[0])
	}
	r := &httpRoute{cookies: responseCookies(hr.GetHeaders())}
	for j, m := range hr.GetMatch() {
		mb, err := compileMatch(fmt.Sprintf("%s.match[%d]", field, j), m)
		if err != nil {
			return nil, err
		}
		r.matches = append(r.matches, mb)
	}

	switch {
	case hr.GetRedirect() != nil:
		r.action = actionRedirect
		switch code := hr.GetRedirect().GetRedirectCode(); code {
		case 0:
			r.status = 301
		case 301, 302, 303, 307, 308:
			r.status = int(code)
		default:
			return nil, &uninterpretable{field + ".redirect.redirectCode", fmt.Sprintf("%d is not a redirect status Istio supports (301, 302, 303, 307, 308)", code)}
		}
	case hr.GetDirectResponse() != nil:
		r.action = actionDirectResponse
		status := hr.GetDirectResponse().GetStatus()
		if status < 200 || status > 599 {
			return nil, &uninterpretable{field + ".directResponse.status", fmt.Sprintf("%d is outside 200..599", status)}
		}
		r.status = int(status)
	case len(hr.GetRoute()) > 0:
		if err := b.compileDestinations(vs, field, hr.GetRoute(), r); err != nil {
			return nil, err
		}
		if err := b.compileMirrors(vs, field, hr, r); err != nil {
			return nil, err
		}
	default:
		return nil, &uninterpretable{field, "has no route, redirect or directResponse"}
	}
	return r, nil
}

func (b *builder) compileDestinations(vs *networkingv1.VirtualService, field string, dests []*networking.HTTPRouteDestination, r *httpRoute) *uninterpretable {
	var sum int64
	for k, d := range dests {
		f := fmt.Sprintf("%s.route[%d]", field, k)
		if u := unsupportedFields(d, destinationFieldKnown); len(u) > 0 {
			return unsupported(f + "." + u[0])
		}
		if d.GetWeight() < 0 || d.GetWeight() > 100 {
			return &uninterpretable{f + ".weight", fmt.Sprintf("%d is outside 0..100", d.GetWeight())}
		}
		if d.GetDestination().GetHost() == "" {
			return &uninterpretable{f + ".destination.host", "empty"}
		}
		sum += int64(d.GetWeight())

		weight := uint64(d.GetWeight())
		if len(dests) == 1 {
			// Istio ignores the weight of a lone destination.
			weight = 100
		}
		host := qualifyHost(d.GetDestination().GetHost(), vs.Namespace)
		t := b.target(host, d.GetDestination().GetSubset())
		b.checkTarget(vs, f+".destination", t)
		if weight == 0 {
			continue // Istio leaves zero-weight clusters out of the route
		}
		r.dests = append(r.dests, weightedDest{
			weight:  weight,
			target:  t,
			cookies: mergeCookies(r.cookies, responseCookies(d.GetHeaders())),
		})
		r.totalWeight += weight
	}
	if len(dests) > 1 && sum != 100 {
		b.problem(kindVirtualService, &vs.ObjectMeta, field+".route",
			"weights add up to %d, not 100; traffic is split in proportion to them, as Envoy does", sum)
	}
	return nil
}

// compileMirrors reads a forwarding route's mirrors as Istio does: mirror
// with mirrorPercentage (or the older mirrorPercent), 100% when neither is
// set, or the list mirrors, each 100% unless its percentage says less; the
// two forms exclude each other.
func (b *builder) compileMirrors(vs *networkingv1.VirtualService, field string, hr *networking.HTTPRoute, r *httpRoute) *uninterpretable {
	percent := func(f string, p *networking.Percent) (float64, *uninterpretable) {
		if p == nil {
			return 100, nil
		}
		if v := p.GetValue(); v >= 0 && v <= 100 {
			return v, nil
		}
		return 0, &uninterpretable{f, fmt.Sprintf("%g is outside 0..100", p.GetValue())}
	}
	add := func(f string, d *networking.Destination, pct float64) *uninterpretable {
		if d.GetHost() == "" {
			return &uninterpretable{f + ".host", "empty"}
		}
		t := b.target(qualifyHost(d.GetHost(), vs.Namespace), d.GetSubset())
		b.checkTarget(vs, f, t)
		if pct > 0 {
			r.mirrors = append(r.mirrors, mirrorDest{target: t, percent: pct})
		}
		return nil
	}
	if m := hr.GetMirror(); m != nil {
		if len(hr.GetMirrors()) > 0 {
			return &uninterpretable{field + ".mirrors", "set together with mirror: Istio accepts one or the other"}
		}
		pct, err := percent(field+".mirrorPercentage.value", hr.GetMirrorPercentage())
		if err != nil {
			return err
		}
		if hr.GetMirrorPercentage() == nil && hr.GetMirrorPercent() != nil { //nolint:staticcheck // the deprecated form, still served
			pct = float64(min(hr.GetMirrorPercent().GetValue(), 100)) //nolint:staticcheck
		}
		return add(field+".mirror", m, pct)
	}
	for i, mp := range hr.GetMirrors() {
		f := fmt.Sprintf("%s.mirrors[%d]", field, i)
		pct, err := percent(f+".percentage.value", mp.GetPercentage())
		if err != nil {
			return err
		}
		if err := add(f+".destination", mp.GetDestination(), pct); err != nil {
			return err
		}
	}
	return nil
}

// checkTarget reports destinations that will answer 503 NC. The
// VirtualService stays in force, as in Istio: the route exists, its
// cluster does not.
func (b *builder) checkTarget(vs *networkingv1.VirtualService, field string, t *target) {
	switch {
	case t.svc == nil:
		b.problem(kindVirtualService, &vs.ObjectMeta, field+".host",
			"no Service has host %s; requests routed there get 503 NC", t.host)
	case t.flags == flagNoCluster:
		b.problem(kindVirtualService, &vs.ObjectMeta, field+".subset",
			"no DestinationRule for host %s defines subset %q; requests routed there get 503 NC", t.host, t.subset)
	}
}

func compileMatch(field string, m *networking.HTTPMatchRequest) (matchBlock, *uninterpretable) {
	if f := unsupportedFields(m, matchFieldKnown); len(f) > 0 {
		return matchBlock{}, unsupported(field + "." + f[0])
	}
	mb := matchBlock{
		ignoreURICase:   m.GetIgnoreUriCase(),
		gateways:        m.GetGateways(),
		sourceLabels:    m.GetSourceLabels(),
		sourceNamespace: m.GetSourceNamespace(),
	}
	single := func(name string, sm *networking.StringMatch) (*stringMatcher, *uninterpretable) {
		if sm == nil {
			return nil, nil
		}
		c, err := compileStringMatch(sm, false)
		if err != nil {
			return nil, &uninterpretable{field + "." + name, err.Error()}
		}
		return &c, nil
	}
	var err *uninterpretable
	if mb.uri, err = single("uri", m.GetUri()); err != nil {
		return matchBlock{}, err
	}
	if mb.uri != nil && mb.ignoreURICase && (mb.uri.kind == matchExact || mb.uri.kind == matchPrefix) {
		mb.uri.value = strings.ToLower(mb.uri.value)
	}
	if mb.method, err = single("method", m.GetMethod()); err != nil {
		return matchBlock{}, err
	}
	if mb.authority, err = single("authority", m.GetAuthority()); err != nil {
		return matchBlock{}, err
	}
	for _, group := range []struct {
		name   string
		m      map[string]*networking.StringMatch
		invert bool
	}{{"headers", m.GetHeaders(), false}, {"withoutHeaders", m.GetWithoutHeaders(), true}} {
		for _, name := range sortedKeys(group.m) {
			f := fmt.Sprintf("%s.%s[%s]", field, group.name, name)
			if strings.HasPrefix(name, "@") {
				return matchBlock{}, &uninterpretable{f, "JWT claim routing is not emulated"}
			}
			c, cerr := compileStringMatch(group.m[name], true)
			if cerr != nil {
				return matchBlock{}, &uninterpretable{f, cerr.Error()}
			}
			mb.headers = append(mb.headers, headerMatcher{name: strings.ToLower(name), m: c, invert: group.invert})
		}
	}
	for _, name := range sortedKeys(m.GetQueryParams()) {
		c, cerr := compileStringMatch(m.GetQueryParams()[name], true)
		if cerr != nil {
			return matchBlock{}, &uninterpretable{fmt.Sprintf("%s.queryParams[%s]", field, name), cerr.Error()}
		}
		mb.query = append(mb.query, queryMatcher{name: name, m: c})
	}
	return mb, nil
}

// validHostPattern accepts a host name, "*" or "*.suffix": Istio allows a
// wildcard only as the leading label.
func validHostPattern(h string) bool {
	if h == "*" {
		return true
	}
	rest := strings.TrimPrefix(h, "*.")
	return rest != "" && !strings.Contains(rest, "*")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
