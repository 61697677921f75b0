package traffic

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Target names what a Router shifts traffic for: one app in one namespace.
// It is deliberately narrow (no Deployment, no Flight): a router needs the
// names of the two Services and where the routing lives, nothing more.
type Target struct {
	Namespace string
	// Name is the app's name (the user's Deployment); generated objects are
	// named after it.
	Name string
	// Host is the host clients call, as the VirtualService lists it: the
	// user's Service name (short names resolve in Namespace, as in Istio).
	Host string
	// Stable and Canary are the Services traffic is split between: the
	// user's own Service and fledge's "<name>-canary".
	Stable, Canary string
	// Baseline, when set, is a third Service the split may send a share
	// to (Weights.Baseline): fledge's "<name>-baseline", a fresh copy of
	// stable started with the canary so that the two are compared on
	// equal terms (same age, same share). Empty: no baseline route.
	Baseline string
	// Comparator, when set, is a Service copies may be mirrored to
	// instead of the canary (Weights.MirrorCompared): fledge's
	// "<name>-mirror", whose pods pass each copy on to the canary and to
	// stable and compare the two answers.
	Comparator string
	// VirtualService, when set, is a VirtualService the team owns: only the
	// destinations and weights of its route named Route are changed, and
	// everything else in it is left exactly as the owner wrote it. Route may
	// be empty only if that VirtualService has a single http route.
	// When VirtualService is empty the router owns a VirtualService of its
	// own for Host, named Name.
	VirtualService, Route string
	// Owner, if set, owns generated objects, so that deleting it (the
	// Flight) garbage-collects them.
	Owner *metav1.OwnerReference
}

// String names the target in errors and logs.
func (t Target) String() string { return t.Namespace + "/" + t.Name }

// Weights is the absolute routing of a target's traffic: a split in
// percent, and the match routes that send some requests to the canary
// ahead of it. It is comparable, so a decision can tell whether the
// routing read back is the routing it wants.
type Weights struct {
	Stable, Canary int32
	// Cohort, when set (a Name), sends every request it matches to the
	// canary, ahead of the split. With a 100/0 split that is a cohort
	// stage: the cohort, and only it, reaches the canary.
	Cohort Cohort
	// Sticky, when set (a Cookie), keeps users on the canary once they
	// reached it: the canary's responses set the cookie, and a route
	// ahead of the split sends requests that carry it to the canary.
	Sticky Sticky
	// Mirror, when above 0, copies that percentage of the split's
	// requests to the canary, fire and forget: users get stable's answers
	// only (Istio's mirror and mirrorPercentage). Only with no traffic on
	// the canary: a mirror stage comes before the canary serves anyone.
	Mirror int32
	// Baseline is the share of the split on the target's Baseline
	// Service, beside Stable and Canary (the three add up to 100). Only
	// on a target that names a Baseline Service, and never with Mirror.
	Baseline int32
	// MirrorCompared sends the Mirror copies to the target's Comparator
	// Service rather than to the canary: it passes each on to the canary
	// and to stable, and compares their answers. Only with Mirror.
	MirrorCompared bool
}

// Cohort is an audience that requests carry visibly to the mesh: one
// request header, matched exactly or by a whole-value RE2 regex (as
// Envoy's safe_regex matches). A cookie is matched through the cookie
// header: see CookieCohort.
type Cohort struct {
	// Name names the match route ("fledge-cohort-<name>"): lower-case
	// letters, digits and dashes.
	Name string
	// Header is the lower-case header name.
	Header string
	// Exactly one of Exact and Regex.
	Exact, Regex string
}

// IsZero reports whether no cohort is set.
func (c Cohort) IsZero() bool { return c == Cohort{} }

// Sticky is the cookie that pins users to the canary: Cookie=Value,
// kept by clients for MaxAge seconds. Value should name the canary's
// revision, so that a cookie from an earlier canary pins nobody to a
// later one.
type Sticky struct {
	Cookie, Value string
	MaxAge        int32
}

// IsZero reports whether no sticky cookie is set.
func (s Sticky) IsZero() bool { return s == Sticky{} }

// SetCookie is the Set-Cookie value the canary's responses carry.
func (s Sticky) SetCookie() string {
	return fmt.Sprintf("%s=%s; Max-Age=%d; Path=/", s.Cookie, s.Value, s.MaxAge)
}

// CookieRegex is the whole-value regex of a cookie header that carries
// name=value among its cookies.
func CookieRegex(name, value string) string {
	return `^(.*;\s*)?` + regexp.QuoteMeta(name) + "=" + regexp.QuoteMeta(value) + `(;.*)?$`
}

// CookieCohort is the cohort of requests carrying cookie name=value.
func CookieCohort(cohort, name, value string) Cohort {
	return Cohort{Name: cohort, Header: "cookie", Regex: CookieRegex(name, value)}
}

// Validate rejects a split that is not two shares in 0..100 adding to
// 100, and a cohort or sticky cookie that is not well formed.
func (w Weights) Validate() error {
	if w.Baseline != 0 {
		if w.Stable < 0 || w.Canary < 0 || w.Baseline < 0 || w.Stable+w.Canary+w.Baseline != 100 {
			return fmt.Errorf("weights stable=%d canary=%d baseline=%d: want three shares in 0..100 that add up to 100", w.Stable, w.Canary, w.Baseline)
		}
	} else if w.Stable < 0 || w.Canary < 0 || w.Stable+w.Canary != 100 {
		return fmt.Errorf("weights stable=%d canary=%d: want two shares in 0..100 that add up to 100", w.Stable, w.Canary)
	}
	switch {
	case w.MirrorCompared && w.Mirror == 0:
		return fmt.Errorf("mirror compared with no mirror: copies go to the comparator only while a percentage of the requests is mirrored")
	case w.Baseline > 0 && w.Mirror > 0:
		return fmt.Errorf("mirror %d%% with a baseline at %d%%: a baseline shares a split the canary serves", w.Mirror, w.Baseline)
	case w.Mirror < 0 || w.Mirror > 100:
		return fmt.Errorf("mirror %d%%: want a percentage in 0..100", w.Mirror)
	case w.Mirror > 0 && w.Canary > 0:
		return fmt.Errorf("mirror %d%% with the canary at %d%%: a mirror copies stable's requests to a canary that serves nobody yet", w.Mirror, w.Canary)
	}
	if !w.Cohort.IsZero() {
		if err := w.Cohort.Validate(); err != nil {
			return err
		}
	}
	if !w.Sticky.IsZero() {
		if err := w.Sticky.Validate(); err != nil {
			return err
		}
	}
	return nil
}

// Validate rejects a cohort that no route could match, and a value that
// is not valid UTF-8. (Name and Header are ASCII by their patterns, and so
// are a sticky cookie's name and value.)
func (c Cohort) Validate() error {
	var wrong []string
	if !dnsLabel.MatchString(c.Name) {
		wrong = append(wrong, fmt.Sprintf("name %q: want lower-case letters, digits and dashes", c.Name))
	}
	if !headerName.MatchString(c.Header) {
		wrong = append(wrong, fmt.Sprintf("header %q: want a lower-case HTTP header name", c.Header))
	}
	// A VirtualService is stored as JSON, which turns bytes that are not
	// UTF-8 into U+FFFD: such a value would never read back as set.
	switch {
	case (c.Exact == "") == (c.Regex == ""):
		wrong = append(wrong, "want exactly one of exact and regex")
	case !utf8.ValidString(c.Exact):
		wrong = append(wrong, fmt.Sprintf("exact %q: not valid UTF-8", c.Exact))
	case !utf8.ValidString(c.Regex):
		wrong = append(wrong, fmt.Sprintf("regex %q: not valid UTF-8", c.Regex))
	case c.Regex != "":
		if _, err := regexp.Compile(c.Regex); err != nil {
			wrong = append(wrong, fmt.Sprintf("regex %q: %v", c.Regex, err))
		}
	}
	if len(wrong) > 0 {
		return fmt.Errorf("cohort %q: %s", c.Name, strings.Join(wrong, "; "))
	}
	return nil
}

// Validate rejects a sticky cookie that a client could not send back.
func (s Sticky) Validate() error {
	var wrong []string
	if !cookieToken.MatchString(s.Cookie) {
		wrong = append(wrong, fmt.Sprintf("cookie %q: not a cookie name", s.Cookie))
	}
	if !cookieToken.MatchString(s.Value) {
		wrong = append(wrong, fmt.Sprintf("value %q: want letters, digits, '-', '_' and '.'", s.Value))
	}
	if s.MaxAge < 1 {
		wrong = append(wrong, fmt.Sprintf("maxAge %d: want at least 1 second", s.MaxAge))
	}
	if len(wrong) > 0 {
		return fmt.Errorf("sticky cookie: %s", strings.Join(wrong, "; "))
	}
	return nil
}

var (
	dnsLabel    = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)
	headerName  = regexp.MustCompile("^[a-z0-9!#$%&'*+.^_`|~-]+$")
	cookieToken = regexp.MustCompile(`^[A-Za-z0-9._-]{1,128}$`)
)

// Router moves a target's traffic between its stable and canary Services.
// Every method is idempotent and takes absolute values, so a retried or
// repeated call (after a crash, say) converges on the same state.
type Router interface {
	// Ensure makes the routing exist and be usable for t: a generated
	// VirtualService is created (all traffic to stable) or repaired; a
	// user-owned one is checked (its route exists and sends traffic to
	// Stable). It never changes the weights of an existing split, nor its
	// cohort or sticky cookie.
	Ensure(ctx context.Context, t Target) error
	// SetWeights sets the split, the cohort and the sticky cookie,
	// absolutely: a zero Cohort or Sticky removes one that was set.
	// Invalid weights are rejected and change nothing. Routing that is
	// not there (never ensured, or released) is set up first, as Ensure
	// would, so the outcome does not depend on what came before.
	SetWeights(ctx context.Context, t Target, w Weights) error
	// Weights reads the weights back from the cluster, as the mesh will
	// apply them. A route with no canary destination reads as 100/0, and
	// so does a released target: plain routing sends everything to Stable.
	Weights(ctx context.Context, t Target) (Weights, error)
	// Release restores plain routing: the generated VirtualService is
	// deleted; in a user-owned one the match routes are removed and the
	// route goes back to its stable destination alone, at full weight.
	// Releasing what is already
	// released is not an error.
	Release(ctx context.Context, t Target) error
}

// FieldManager is the field manager of fledge's writes of routing (in
// managedFields), so that another writer (a GitOps tool) can tell fledge's
// changes apart and leave them alone, and fledge can name whoever else
// changed them.
const FieldManager = "fledge"

// WithFence returns a context whose routing writes first ask fence: a
// router asks Fenced before every write it sends, retries after a
// conflict included, so that a caller that may have lost the right to
// write (a leader paused past its Lease) writes nothing more, not even on
// a retry that re-read what its successor wrote.
func WithFence(ctx context.Context, fence func() error) context.Context {
	return context.WithValue(ctx, fenceKey{}, fence)
}

type fenceKey struct{}

// Fenced asks ctx's fence (WithFence), if it has one: a non-nil answer
// means write nothing.
func Fenced(ctx context.Context) error {
	if fence, ok := ctx.Value(fenceKey{}).(func() error); ok && fence != nil {
		return fence()
	}
	return nil
}

// WriterNamer is implemented by routers that can tell who last changed a
// target's routing, other than fledge.
type WriterNamer interface {
	// LastWriter names the field manager, other than FieldManager, that
	// last changed the routing's spec, with how and when ("" if none is
	// known).
	LastWriter(ctx context.Context, t Target) (string, error)
}

// ErrConflict reports routing that fledge must not take over, for example
// a host already routed by a VirtualService the target does not name, or
// a named route that was edited into a shape fledge cannot manage. It is
// terminal until a person changes something: retrying will not help.
var ErrConflict = errors.New("routing conflict")
