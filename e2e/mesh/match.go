package mesh

import (
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"

	networking "istio.io/api/networking/v1alpha3"
)

type matchKind uint8

const (
	matchPresent matchKind = iota // the value exists, whatever it is
	matchExact
	matchPrefix
	matchRegex
)

// stringMatcher is a compiled Istio StringMatch.
type stringMatcher struct {
	kind  matchKind
	value string
	re    *regexp.Regexp
}

// compileStringMatch compiles m. An empty StringMatch means "present", as
// Istio translates it to Envoy's present_match. With starIsPresent, the
// regex "*" also means "present": Istio special-cases it for headers and
// query parameters (istio/istio#20629) because it is not valid RE2.
//
// Regexes are anchored on both ends: Envoy's safe_regex must match the whole
// value, unlike Go's regexp.MatchString.
func compileStringMatch(m *networking.StringMatch, starIsPresent bool) (stringMatcher, error) {
	switch t := m.GetMatchType().(type) {
	case nil:
		return stringMatcher{kind: matchPresent}, nil
	case *networking.StringMatch_Exact:
		return stringMatcher{kind: matchExact, value: t.Exact}, nil
	case *networking.StringMatch_Prefix:
		return stringMatcher{kind: matchPrefix, value: t.Prefix}, nil
	case *networking.StringMatch_Regex:
		if starIsPresent && t.Regex == "*" {
			return stringMatcher{kind: matchPresent}, nil
		}
		re, err := regexp.Compile(`^(?:` + t.Regex + `)$`)
		if err != nil {
			// Report the user's pattern, not the anchored one.
			if _, perr := regexp.Compile(t.Regex); perr != nil {
				err = perr
			}
			return stringMatcher{}, fmt.Errorf("regex %q is not valid RE2: %w", t.Regex, err)
		}
		return stringMatcher{kind: matchRegex, value: t.Regex, re: re}, nil
	default:
		return stringMatcher{}, fmt.Errorf("match type %T is not supported", t)
	}
}

func (m *stringMatcher) match(v string) bool {
	switch m.kind {
	case matchExact:
		return v == m.value
	case matchPrefix:
		return strings.HasPrefix(v, m.value)
	case matchRegex:
		return m.re.MatchString(v)
	default:
		return true
	}
}

// headerMatcher is one entry of headers (invert false) or withoutHeaders
// (invert true).
type headerMatcher struct {
	name   string // lower case
	m      stringMatcher
	invert bool
}

// matches follows Envoy's HeaderUtility::matchHeaders with the options
// Istio sets: a missing header never matches a positive matcher; for
// withoutHeaders Istio sets treat_missing_header_as_empty (except on
// present matches), so a missing header is compared as "" and then inverted.
func (h *headerMatcher) matches(headers map[string]string) bool {
	v, ok := headers[h.name]
	if !h.invert {
		return ok && h.m.match(v)
	}
	if h.m.kind == matchPresent {
		return !ok
	}
	return !h.m.match(v)
}

type queryMatcher struct {
	name string
	m    stringMatcher
}

// matchBlock is one compiled HTTPMatchRequest; its conditions are ANDed.
type matchBlock struct {
	uri           *stringMatcher
	ignoreURICase bool
	method        *stringMatcher
	authority     *stringMatcher
	headers       []headerMatcher
	query         []queryMatcher
	// Source conditions. Istio evaluates them when it generates a proxy's
	// configuration; here they are evaluated per request against the
	// calling client, which is equivalent.
	gateways        []string
	sourceLabels    map[string]string
	sourceNamespace string
}

// requestView caches what matching derives from a request, so that a
// VirtualService with many routes splits the path once.
type requestView struct {
	req       *Request
	path      string // without the query string, as Envoy matches paths
	rawQuery  string
	query     url.Values
	lowerPath string
}

func newRequestView(req *Request) requestView {
	path, rawQuery, _ := strings.Cut(req.Path, "?")
	return requestView{req: req, path: path, rawQuery: rawQuery}
}

func (v *requestView) queryValues() url.Values {
	if v.query == nil {
		// A malformed query still yields the pairs that parsed, like
		// Envoy's lenient parser.
		v.query, _ = url.ParseQuery(v.rawQuery)
	}
	return v.query
}

func (v *requestView) lowerCasePath() string {
	if v.lowerPath == "" {
		v.lowerPath = strings.ToLower(v.path)
	}
	return v.lowerPath
}

func (b *matchBlock) matches(v *requestView) bool {
	req := v.req
	if !b.sourceMatches(req) {
		return false
	}
	if b.uri != nil && !b.uriMatches(v) {
		return false
	}
	if b.method != nil && !b.method.match(req.Method) {
		return false
	}
	if b.authority != nil && !b.authority.match(req.Host) {
		return false
	}
	for i := range b.headers {
		if !b.headers[i].matches(req.Headers) {
			return false
		}
	}
	if len(b.query) > 0 {
		q := v.queryValues()
		for i := range b.query {
			vals, ok := q[b.query[i].name]
			if !ok || !b.query[i].m.match(vals[0]) {
				return false
			}
		}
	}
	return true
}

// sourceMatches mirrors Istio's sourceMatchHTTP: a match that names
// gateways applies to sidecars only if it names "mesh", and then its source
// labels and namespace are not consulted.
func (b *matchBlock) sourceMatches(req *Request) bool {
	if len(b.gateways) > 0 {
		return slices.Contains(b.gateways, meshGateway)
	}
	for k, want := range b.sourceLabels {
		if got, ok := req.SourceLabels[k]; !ok || got != want {
			return false
		}
	}
	return b.sourceNamespace == "" || b.sourceNamespace == req.SourceNamespace
}

// uriMatches applies ignoreUriCase to exact and prefix matches only, as
// Envoy's case_sensitive does not affect safe_regex.
func (b *matchBlock) uriMatches(v *requestView) bool {
	if !b.ignoreURICase || b.uri.kind == matchRegex || b.uri.kind == matchPresent {
		return b.uri.match(v.path)
	}
	return b.uri.match(v.lowerCasePath())
}
