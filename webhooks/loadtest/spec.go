package loadtest

import (
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Defaults and limits of a run's parameters.
const (
	DefaultRate        = 10
	DefaultDuration    = 10 * time.Second
	DefaultMaxRate     = 1000
	DefaultMaxDuration = 5 * time.Minute
)

// Metadata keys a hook's metadata may hold; see the package documentation.
const (
	KeyURL       = "url"
	KeyStableURL = "stableUrl"
	KeyRate      = "rate"
	KeyDuration  = "duration"
	KeyMethod    = "method"
	KeyHeaders   = "headers"
	KeyBody      = "body"
)

var keys = []string{KeyURL, KeyStableURL, KeyRate, KeyDuration, KeyMethod, KeyHeaders, KeyBody}

// methods are the methods a run may use. CONNECT and TRACE are not load.
var methods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

// reservedHeaders are set by the HTTP client from the URL and body. Host in
// particular must not be settable: behind a proxy or a mesh the Host header,
// not the URL, picks the service, so it would step around the allowlist.
var reservedHeaders = []string{"Host", "Content-Length", "Transfer-Encoding", "Connection"}

// Limits bound what a policy may ask of this tester. Zero fields take the
// defaults.
type Limits struct {
	MaxRate     int
	MaxDuration time.Duration
}

func (l Limits) withDefaults() Limits {
	if l.MaxRate <= 0 {
		l.MaxRate = DefaultMaxRate
	}
	if l.MaxDuration <= 0 {
		l.MaxDuration = DefaultMaxDuration
	}
	return l
}

// Spec is one run as a hook's metadata asks for it.
type Spec struct {
	URL *url.URL
	// StableURL, if set, receives the same load as URL at the same time.
	StableURL *url.URL
	Rate      int // requests per second
	Duration  time.Duration
	Method    string
	Header    http.Header
	Body      []byte
}

// Requests is the number of requests the run sends: Rate × Duration,
// rounded down.
func (s Spec) Requests() uint64 {
	return uint64(s.Rate) * uint64(s.Duration) / uint64(time.Second)
}

// ParseSpec reads a hook's metadata. Its errors name the metadata key, as
// in `metadata.rate: "abc" is not an integer`, since that is what the
// policy's author has to fix.
func ParseSpec(metadata map[string]string, limits Limits) (Spec, error) {
	limits = limits.withDefaults()
	fail := func(key, format string, args ...any) (Spec, error) {
		return Spec{}, fmt.Errorf("metadata.%s: %s", key, fmt.Sprintf(format, args...))
	}
	for _, k := range slices.Sorted(maps.Keys(metadata)) {
		if !slices.Contains(keys, k) {
			return fail(k, "unknown key (want %s)", strings.Join(keys, ", "))
		}
	}

	s := Spec{Rate: DefaultRate, Duration: DefaultDuration, Method: http.MethodGet, Header: http.Header{}}

	raw := strings.TrimSpace(metadata[KeyURL])
	if raw == "" {
		return fail(KeyURL, "required: the target of the load")
	}
	u, err := parseTarget(raw)
	if err != nil {
		return fail(KeyURL, "%v", err)
	}
	s.URL = u
	if v, ok := metadata[KeyStableURL]; ok {
		raw := strings.TrimSpace(v)
		if raw == "" {
			return fail(KeyStableURL, "empty: leave the key out to load the url alone")
		}
		u, err := parseTarget(raw)
		if err != nil {
			return fail(KeyStableURL, "%v", err)
		}
		if u.String() == s.URL.String() {
			return fail(KeyStableURL, "%q is the url: it would get twice the load, and stable none", u.Redacted())
		}
		s.StableURL = u
	}

	if v, ok := metadata[KeyRate]; ok {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		switch {
		case err != nil:
			return fail(KeyRate, "%q is not an integer", v)
		case n < 1:
			return fail(KeyRate, "%d is below 1 request per second", n)
		case n > limits.MaxRate:
			return fail(KeyRate, "%d is above this load tester's maximum of %d per second", n, limits.MaxRate)
		}
		s.Rate = n
	}

	if v, ok := metadata[KeyDuration]; ok {
		d, err := time.ParseDuration(strings.TrimSpace(v))
		switch {
		case err != nil:
			return fail(KeyDuration, "%q is not a duration (e.g. 30s, 2m)", v)
		case d <= 0:
			return fail(KeyDuration, "%s is not positive", d)
		case d > limits.MaxDuration:
			return fail(KeyDuration, "%s is above this load tester's maximum of %s", d, limits.MaxDuration)
		}
		s.Duration = d
	}
	if s.Requests() == 0 {
		return fail(KeyDuration, "%s at %d per second sends no request", s.Duration, s.Rate)
	}

	if v, ok := metadata[KeyMethod]; ok {
		m := strings.ToUpper(strings.TrimSpace(v))
		if !slices.Contains(methods, m) {
			return fail(KeyMethod, "%q is not one of %s", v, strings.Join(methods, ", "))
		}
		s.Method = m
	}

	if v, ok := metadata[KeyHeaders]; ok {
		h, err := parseHeaders(v)
		if err != nil {
			return fail(KeyHeaders, "%v", err)
		}
		s.Header = h
	}

	if v, ok := metadata[KeyBody]; ok && v != "" {
		s.Body = []byte(v)
	}
	return s, nil
}

// parseTarget checks a target URL: absolute, http or https, with a host.
func parseTarget(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%q is not a URL", raw)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("%q: the scheme must be http or https", u.Redacted())
	}
	if u.Hostname() == "" {
		return nil, fmt.Errorf("%q has no host", u.Redacted())
	}
	return u, nil
}

// parseHeaders reads one "Name: value" per line.
func parseHeaders(text string) (http.Header, error) {
	h := http.Header{}
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line) // also drops a "\r" of CRLF lines
		if line == "" {
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		switch {
		case !ok:
			return nil, fmt.Errorf("line %d: %q is not \"Name: value\"", i+1, line)
		case !isToken(name):
			return nil, fmt.Errorf("line %d: %q is not a header name", i+1, name)
		case !isFieldValue(value):
			return nil, fmt.Errorf("line %d: the value of %s holds a control character", i+1, name)
		}
		name = http.CanonicalHeaderKey(name)
		if slices.Contains(reservedHeaders, name) {
			return nil, fmt.Errorf("line %d: %s cannot be set: the HTTP client derives it from the url and body", i+1, name)
		}
		h.Add(name, value)
	}
	return h, nil
}

// isToken reports whether s is an HTTP token (RFC 9110 section 5.6.2), the
// syntax of a header name.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// isFieldValue reports whether s may be a header value: no control
// characters but tab.
func isFieldValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}
