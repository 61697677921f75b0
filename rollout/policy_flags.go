package rollout

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fledgehq/fledge/analysis"
	"github.com/fledgehq/fledge/flags"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	"github.com/fledgehq/fledge/traffic"
)

// CohortSpec is one cohort stage as written in the policy file: an
// audience that requests carry visibly to the mesh, one header or one
// cookie, sent (alone) to the canary before the weighted steps.
type CohortSpec struct {
	Name string `json:"name"`
	// Header or Cookie names what carries the cohort; Value is matched
	// exactly (Regex, for a header only: a whole-value RE2 regex).
	Header string `json:"header,omitempty"`
	Cookie string `json:"cookie,omitempty"`
	Value  string `json:"value,omitempty"`
	Regex  string `json:"regex,omitempty"`
	// Attribute is the evaluation context attribute under which apps
	// pass the cohort to release flags (default: the header's or the
	// cookie's name).
	Attribute string `json:"attribute,omitempty"`
	// MinDuration is how long the cohort is served before it is first
	// judged (default: the interval).
	MinDuration metav1.Duration `json:"minDuration,omitempty"`
	// MinSamples raises every check's minimum sample during the stage:
	// the cohort must bring that many requests before it is judged.
	MinSamples int64 `json:"minSamples,omitempty"`
}

// StickySpec keeps users on the canary once they reached it, during the
// weighted steps: canary responses set a cookie that a route matches.
type StickySpec struct {
	// Cookie is the cookie's name (default "fledge-canary"); its value is
	// the canary's revision.
	Cookie string `json:"cookie,omitempty"`
	// MaxAge is how long clients keep it (default 1h).
	MaxAge metav1.Duration `json:"maxAge,omitempty"`
}

// FlagGateSpec is an OpenFeature boolean flag asked before every traffic
// increase and before promotion: false (or unreadable) holds.
type FlagGateSpec struct {
	Flag string `json:"flag"`
}

// ReleaseFlagSpec links a flag in flagd's JSON format, kept in a
// ConfigMap in the Deployment's namespace, to the rollout: fledge rewrites
// its targeting in lockstep with the traffic.
type ReleaseFlagSpec struct {
	ConfigMap string `json:"configMap"`
	Key       string `json:"key,omitempty"` // default "flags.flagd.json"
	Flag      string `json:"flag"`
	// OnVariant and OffVariant are the variants served to the canary's
	// users and to the others (default "on" and "off"). (Not "on:" and
	// "off:": YAML reads those keys as booleans.)
	On  Variant `json:"onVariant,omitempty"`
	Off Variant `json:"offVariant,omitempty"`
	// BucketBy is the context attribute fractional splits bucket users by
	// (default "targetingKey").
	BucketBy string `json:"bucketBy,omitempty"`
	// FinalVariant is served to everyone once the revision is promoted
	// (default: OnVariant).
	Final Variant `json:"finalVariant,omitempty"`
}

// Variant is a flag variant's name. YAML reads on, off, yes and no
// unquoted as booleans: such a value is refused with a hint, rather than
// taken as "true".
type Variant string

// UnmarshalJSON implements json.Unmarshaler.
func (v *Variant) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("variant %s: write variant names in quotes (YAML reads on, off, yes and no unquoted as booleans)", b)
	}
	*v = Variant(s)
	return nil
}

// FlagSourceSpec is where flag gates are read: a ConfigMap in fledge's
// own namespace holding flags in flagd's JSON format.
type FlagSourceSpec struct {
	ConfigMap string `json:"configMap"`
	Key       string `json:"key,omitempty"` // default "flags.flagd.json"
}

func (s *FlagSourceSpec) withDefaults() *FlagSourceSpec {
	out := *s
	if out.Key == "" {
		out.Key = DefaultFlagKey
	}
	return &out
}

// Cohort is a validated cohort stage (or the mirror stage: Mirror set, no
// route).
type Cohort struct {
	Name   string
	Route  traffic.Cohort
	Mirror int32
	// Host is a blue/green preview's host (a Service fledge creates), when
	// the preview is reached by host rather than by a route.
	Host string
	// Compared: a mirror stage whose copies go through the comparator,
	// whose response comparison Check (analysis.ResponseDiff) judges it
	// beside the policy's checks.
	Compared bool
	Check    *analysis.Metric
	// Attribute and Value select the cohort in release flags; Value is
	// empty for a regex cohort (which release flags cannot mirror).
	Attribute, Value string
	MinDuration      time.Duration
	MinSamples       int64
}

// ReleaseFlag is a validated release flag link.
type ReleaseFlag struct {
	ConfigMap, Key string
	Link           flags.Link
	Final          string
}

// Flag defaults.
const (
	DefaultFlagKey      = "flags.flagd.json"
	DefaultStickyCookie = "fledge-canary"
	defaultStickyMaxAge = time.Hour
	maxCohorts          = 5
	maxFlagLinks        = 10
)

var (
	flagKeyPattern   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,127}$`)
	configKeyPattern = regexp.MustCompile(`^[-._a-zA-Z0-9]{1,253}$`)
	headerPattern    = regexp.MustCompile("^[a-z0-9!#$%&'*+.^_`|~-]{1,100}$")
	cookiePattern    = regexp.MustCompile(`^[A-Za-z0-9._-]{1,100}$`)
)

// buildFlags validates and fills a policy's cohorts, sticky users, flag
// gates and release flags.
func buildFlags(s PolicySpec, hasSource bool, p *Policy, field func(f, format string, args ...any)) {
	if len(s.Cohorts) > maxCohorts {
		field("cohorts", "%d cohort stages: at most %d", len(s.Cohorts), maxCohorts)
	}
	seen := map[string]bool{}
	for i, cs := range s.Cohorts {
		at := fmt.Sprintf("cohorts[%d]", i)
		if !validName(cs.Name) {
			field(at+".name", "%q: lower-case letters, digits and dashes", cs.Name)
		} else if seen[cs.Name] {
			field(at+".name", "%q appears twice", cs.Name)
		}
		seen[cs.Name] = true
		c := buildCohort(cs, at, field)
		if c.MinDuration == 0 {
			c.MinDuration = p.Interval
		}
		if c.MinDuration < time.Second {
			field(at+".minDuration", "%s is shorter than 1s", c.MinDuration)
		}
		if c.MinSamples < 0 {
			field(at+".minSamples", "%d is negative", c.MinSamples)
		}
		p.Cohorts = append(p.Cohorts, c)
	}
	if s.Sticky != nil {
		st := traffic.Sticky{Cookie: s.Sticky.Cookie, MaxAge: int32(s.Sticky.MaxAge.Seconds())}
		if st.Cookie == "" {
			st.Cookie = DefaultStickyCookie
		}
		if s.Sticky.MaxAge.Duration == 0 {
			st.MaxAge = int32(defaultStickyMaxAge.Seconds())
		}
		if !cookiePattern.MatchString(st.Cookie) {
			field("sticky.cookie", "%q is not a cookie name", st.Cookie)
		}
		if st.MaxAge < 1 || s.Sticky.MaxAge.Duration > 30*24*time.Hour {
			field("sticky.maxAge", "%s: want 1s..720h", s.Sticky.MaxAge.Duration)
		}
		p.Sticky = &st
	}
	seenGate := map[string]bool{}
	for i, g := range s.FlagGates {
		at := fmt.Sprintf("flagGates[%d].flag", i)
		switch {
		case !flagKeyPattern.MatchString(g.Flag):
			field(at, "%q is not a flag key", g.Flag)
		case seenGate[g.Flag]:
			field(at, "%q appears twice", g.Flag)
		}
		seenGate[g.Flag] = true
		p.FlagGates = append(p.FlagGates, g.Flag)
	}
	if len(s.FlagGates) > 0 && !hasSource {
		field("flagGates", "flag gates need a flagSource at the top of the file (a ConfigMap in fledge's namespace)")
	}
	if len(s.ReleaseFlags) > maxFlagLinks {
		field("releaseFlags", "%d release flags: at most %d", len(s.ReleaseFlags), maxFlagLinks)
	}
	seenFlag := map[string]bool{}
	for i, rs := range s.ReleaseFlags {
		at := fmt.Sprintf("releaseFlags[%d]", i)
		rf := ReleaseFlag{ConfigMap: rs.ConfigMap, Key: rs.Key, Final: string(rs.Final),
			Link: flags.Link{Flag: rs.Flag, On: string(rs.On), Off: string(rs.Off), BucketBy: rs.BucketBy}}
		if rf.Key == "" {
			rf.Key = DefaultFlagKey
		}
		if rf.Link.On == "" {
			rf.Link.On = "on"
		}
		if rf.Link.Off == "" {
			rf.Link.Off = "off"
		}
		if rf.Link.BucketBy == "" {
			rf.Link.BucketBy = "targetingKey"
		}
		if rf.Final == "" {
			rf.Final = rf.Link.On
		}
		if !validDNSSubdomain(rs.ConfigMap) {
			field(at+".configMap", "%q is not a ConfigMap name", rs.ConfigMap)
		}
		if !configKeyPattern.MatchString(rf.Key) {
			field(at+".key", "%q is not a ConfigMap key", rf.Key)
		}
		if !flagKeyPattern.MatchString(rs.Flag) {
			field(at+".flag", "%q is not a flag key", rs.Flag)
		}
		id := rf.ConfigMap + "/" + rf.Key + "/" + rs.Flag
		if seenFlag[id] {
			field(at+".flag", "%q in %s/%s appears twice", rs.Flag, rf.ConfigMap, rf.Key)
		}
		seenFlag[id] = true
		if rf.Link.On == rf.Link.Off {
			field(at+".offVariant", "%q is also the on-variant", rf.Link.Off)
		}
		if rf.Link.BucketBy == "" || strings.ContainsAny(rf.Link.BucketBy, " \t\n") {
			field(at+".bucketBy", "%q is not an attribute name", rf.Link.BucketBy)
		}
		p.ReleaseFlags = append(p.ReleaseFlags, rf)
	}
	if len(p.ReleaseFlags) > 0 {
		for i, c := range p.Cohorts {
			if c.Value == "" {
				field(fmt.Sprintf("cohorts[%d].regex", i), "a regex cohort cannot be mirrored in release flags (flagd compares values); give a value")
			}
		}
	}
}

// buildCohort validates a cohort's route (one header, matched by value or
// regex, or one cookie's value), reporting problems under the field path at.
func buildCohort(cs CohortSpec, at string, field func(f, format string, args ...any)) Cohort {
	c := Cohort{Name: cs.Name, MinDuration: cs.MinDuration.Duration, MinSamples: cs.MinSamples}
	switch {
	case (cs.Header == "") == (cs.Cookie == ""):
		field(at, "give exactly one of header and cookie")
	case cs.Header != "":
		h := strings.ToLower(cs.Header)
		if !headerPattern.MatchString(h) || h == "cookie" {
			field(at+".header", "%q is not a header name fledge can match (use cookie: for cookies)", cs.Header)
		}
		c.Route = traffic.Cohort{Name: cs.Name, Header: h, Exact: cs.Value, Regex: cs.Regex}
		c.Attribute, c.Value = h, cs.Value
		if (cs.Value == "") == (cs.Regex == "") {
			field(at, "give exactly one of value and regex")
		}
	default:
		if !cookiePattern.MatchString(cs.Cookie) {
			field(at+".cookie", "%q is not a cookie name", cs.Cookie)
		}
		if cs.Regex != "" {
			field(at+".regex", "only a header can be matched by regex; give the cookie's value")
		}
		if !cookiePattern.MatchString(cs.Value) {
			field(at+".value", "%q: a cookie value of letters, digits, '.', '_' and '-' is required", cs.Value)
		}
		c.Route = traffic.CookieCohort(cs.Name, cs.Cookie, cs.Value)
		c.Attribute, c.Value = cs.Cookie, cs.Value
	}
	if cs.Attribute != "" {
		c.Attribute = cs.Attribute
	}
	if cs.Regex != "" {
		if _, err := regexp.Compile(cs.Regex); err != nil {
			field(at+".regex", "%v", err)
		}
	}
	if validName(cs.Name) && cs.Header != "" && (cs.Value == "") != (cs.Regex == "") {
		if err := c.Route.Validate(); err != nil {
			field(at, "%v", err)
		}
	}
	return c
}

// CohortOf returns the cohort stage of a status's current step, if it is
// one.
func CohortOf(st *v1alpha1.FlightStatus) *v1alpha1.CohortStage {
	if st.Step >= 0 && int(st.Step) < len(st.Cohorts) {
		return &st.Cohorts[st.Step]
	}
	return nil
}

// StageMetrics are the checks of the Flight's current stage: during a
// cohort stage, every check needs at least the cohort's sample.
func StageMetrics(p *Policy, st *v1alpha1.FlightStatus) []analysis.Metric {
	if st.BlueGreen != nil && st.Step == 1 {
		// After the switch: the threshold checks (see decider.comparisons).
		var out []analysis.Metric
		for _, m := range p.Metrics {
			if !m.IsComparison() {
				out = append(out, m)
			}
		}
		return out
	}
	c := CohortOf(st)
	if c == nil || c.MinSamples == 0 && !c.Compared {
		return p.Metrics
	}
	out := append([]analysis.Metric(nil), p.Metrics...)
	for i := range out {
		if !out[i].IsComparison() { // comparisons are judged from the first request
			out[i].MinSamples = max(out[i].MinSamples, c.MinSamples)
		}
	}
	if c.Compared && p.Mirror != nil && p.Mirror.Check != nil {
		// The response comparison judges the compared mirror stage.
		out = append(out, *p.Mirror.Check)
	}
	return out
}
