package rollout

import (
	"fmt"
	"net/netip"
	"net/url"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/fledgehq/fledge/webhooks"
)

// HookSpec is one webhook as written in the policy file. Only the platform
// team writes policies, so only they can name a URL: a Deployment's
// annotations never can.
type HookSpec struct {
	Name string `json:"name"`
	Type string `json:"type"`
	URL  string `json:"url"`
	// Timeout bounds one attempt (default 10s; a load test's duration
	// plus a margin).
	Timeout  metav1.Duration   `json:"timeout,omitempty"`
	Retries  int               `json:"retries,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
	// When, for rollout hooks: "always" (default), or "notEnoughData" to
	// call it only when a check could not judge for lack of samples, and
	// then check again at once: load on demand, for services without
	// organic traffic. A comparison with stable lacks samples while it
	// cannot tell yet (inconclusive, or before its first look): the load
	// is called at every round until it decides, and not after. A load
	// that should feed a comparison names stableUrl in its metadata too,
	// so that stable gets as much evidence as the canary.
	When string `json:"when,omitempty"`
	// OnError, for pre-rollout and rollout hooks: what a call without a
	// usable answer (timeout, refused, garbage) means: "fail" (default,
	// a failed check) or "hold" (cannot judge).
	OnError string `json:"onError,omitempty"`
	// Deadline, for gates: how long to wait for a 2xx before OnDeadline
	// applies (default 1h). OnDeadline is "hold" (default: keep waiting,
	// and say so) or "rollback".
	Deadline   metav1.Duration `json:"deadline,omitempty"`
	OnDeadline string          `json:"onDeadline,omitempty"`
	// PollInterval, for gates and rollback hooks: how often a closed gate
	// is asked again (default 10s).
	PollInterval metav1.Duration `json:"pollInterval,omitempty"`
	// AllowLinkLocal lets the hook call link-local and cloud metadata
	// addresses, which are refused by default. Private and loopback
	// addresses are allowed by the file's hookNetworks instead.
	AllowLinkLocal bool `json:"allowLinkLocal,omitempty"`
	// Thresholds judge a load test's answer (rollout hooks only).
	Thresholds *LoadThresholds `json:"thresholds,omitempty"`
}

// LoadThresholds judge the figures a load-test hook answers with. Each
// set bound is one check in the decision log.
type LoadThresholds struct {
	MinRequests uint64   `json:"minRequests,omitempty"`
	MinSuccess  *float64 `json:"minSuccess,omitempty"` // ratio, 0..1
	MaxP95Ms    *float64 `json:"maxP95Ms,omitempty"`
	MaxP99Ms    *float64 `json:"maxP99Ms,omitempty"`
}

// SecretRef names a key of a Secret in fledge's own namespace.
type SecretRef struct {
	Name string `json:"name"`
	Key  string `json:"key"`
}

// SlackSpec sends a policy's notifications to Slack. The Secret (in
// fledge's namespace) holds either webhook-url, or token, channel and
// optionally api-url (see webhooks/slack).
type SlackSpec struct {
	Secret string `json:"secret"`
	// Channel overrides the Secret's channel (bot tokens only).
	Channel string `json:"channel,omitempty"`
	// Events limits the messages (default all): Started, Promoted,
	// RolledBack, Aborted, Held.
	Events []string `json:"events,omitempty"`
}

// Hook is a validated webhook with defaults applied.
type Hook struct {
	Name               string
	Type               webhooks.Type
	URL                string
	Timeout            time.Duration
	Retries            int
	Metadata           map[string]string
	OnNotEnoughData    bool // When: notEnoughData
	HoldOnError        bool
	Deadline           time.Duration
	RollbackOnDeadline bool
	PollInterval       time.Duration
	AllowLinkLocal     bool
	// Networks are the policy file's hookNetworks: the private (and, for
	// loopback entries, loopback) addresses the hook may reach.
	Networks   []netip.Prefix
	Thresholds *LoadThresholds
}

// Slack is a validated Slack notification target.
type Slack struct {
	Secret  string
	Channel string
	Events  map[string]bool // nil: all
}

// Wants reports whether the event is sent.
func (s *Slack) Wants(event string) bool { return s != nil && (s.Events == nil || s.Events[event]) }

// Notification events.
const (
	EventStarted    = "Started"
	EventPromoted   = "Promoted"
	EventRolledBack = "RolledBack"
	EventAborted    = "Aborted"
	EventHeld       = "Held"
	// EventSwitched: a blue/green revision took all traffic; the previous
	// one is kept at full size while it is judged.
	EventSwitched = "Switched"
	// EventReverted: the watch after a promotion found the promoted
	// revision worse, and all traffic went to the previous revision's
	// pods.
	EventReverted = "Reverted"
)

var notificationEvents = []string{EventStarted, EventPromoted, EventRolledBack, EventAborted, EventHeld, EventSwitched, EventReverted}

const (
	defaultHookTimeout  = 10 * time.Second
	maxHookTimeout      = 10 * time.Minute
	defaultGateDeadline = time.Hour
	defaultPollInterval = 10 * time.Second
	maxHooks            = 20
	maxHookRetries      = 5
	maxMetadata         = 32
)

// MetadataStableURL is the load-test hook metadata key that names a URL
// reaching stable's pods alone (see webhooks/loadtest): a policy with such
// a hook needs the Service "<name>-stable", which fledge creates beside
// the canary's.
const MetadataStableURL = "stableUrl"

// NeedsStableService reports whether a rollout or pre-rollout hook loads
// stable directly (metadata stableUrl), so that fledge must give stable's
// pods a Service of their own while a canary runs. Apps whose policy has
// none cost no extra ClusterIP.
func (p *Policy) NeedsStableService() bool {
	if p.Mirror != nil && p.Mirror.Compared {
		return true // the comparator asks stable too
	}
	for _, h := range p.Hooks {
		if _, ok := h.Metadata[MetadataStableURL]; ok && (h.Type == webhooks.Rollout || h.Type == webhooks.PreRollout) {
			return true
		}
	}
	return false
}

// hooksOf returns the policy's hooks of one type, in policy order.
func (p *Policy) hooksOf(t webhooks.Type) []Hook {
	var out []Hook
	for _, h := range p.Hooks {
		if h.Type == t {
			out = append(out, h)
		}
	}
	return out
}

func buildHooks(specs []HookSpec, field func(f, format string, args ...any)) []Hook {
	if len(specs) > maxHooks {
		field("webhooks", "%d hooks: at most %d", len(specs), maxHooks)
		return nil
	}
	seen := map[string]bool{}
	var out []Hook
	for i, s := range specs {
		at := func(f string) string { return fmt.Sprintf("webhooks[%d].%s", i, f) }
		h := Hook{
			Name: s.Name, URL: s.URL, Retries: s.Retries, Metadata: s.Metadata,
			Timeout:        orDefault(s.Timeout.Duration, defaultHookTimeout),
			Deadline:       orDefault(s.Deadline.Duration, defaultGateDeadline),
			PollInterval:   orDefault(s.PollInterval.Duration, defaultPollInterval),
			AllowLinkLocal: s.AllowLinkLocal, Thresholds: s.Thresholds,
		}
		if !validName(s.Name) {
			field(at("name"), "%q: hook names are lower-case letters, digits and dashes", s.Name)
		} else if seen[s.Name] {
			field(at("name"), "%q appears twice", s.Name)
		}
		seen[s.Name] = true
		t, err := webhooks.ParseType(s.Type)
		if err != nil {
			field(at("type"), "%v", err)
		}
		h.Type = t
		if err := validateHookURL(s.URL); err != nil {
			field(at("url"), "%v", err)
		}
		if h.Timeout < 100*time.Millisecond || h.Timeout > maxHookTimeout {
			field(at("timeout"), "%s: must be between 100ms and %s", h.Timeout, maxHookTimeout)
		}
		if s.Retries < 0 || s.Retries > maxHookRetries {
			field(at("retries"), "%d: must be in 0..%d", s.Retries, maxHookRetries)
		}
		if len(s.Metadata) > maxMetadata {
			field(at("metadata"), "%d entries: at most %d", len(s.Metadata), maxMetadata)
		}
		if v, ok := s.Metadata[MetadataStableURL]; ok {
			// fledge reads this key: it creates the "<name>-stable" Service
			// the URL should name. The load tester checks its host
			// against its own allow list; this refuses what no load
			// tester could use, at load time, naming the field.
			if t != webhooks.Rollout && t != webhooks.PreRollout {
				field(at("metadata."+MetadataStableURL), "applies to rollout and pre-rollout hooks (load tests) only, not %s", t)
			} else if err := validateHookURL(strings.TrimSpace(v)); err != nil {
				field(at("metadata."+MetadataStableURL), "%v", err)
			} else if strings.TrimSpace(v) == strings.TrimSpace(s.Metadata["url"]) {
				field(at("metadata."+MetadataStableURL), "%q is the url: it must reach stable's pods alone (the Service <name>-stable)", v)
			}
		}
		switch s.When {
		case "", "always":
		case "notEnoughData":
			h.OnNotEnoughData = true
			if t != webhooks.Rollout {
				field(at("when"), "notEnoughData applies to rollout hooks only, not %s", t)
			}
		default:
			field(at("when"), "%q: want always or notEnoughData", s.When)
		}
		switch s.OnError {
		case "", "fail":
		case "hold":
			h.HoldOnError = true
		default:
			field(at("onError"), "%q: want fail or hold", s.OnError)
		}
		if s.OnError != "" && t != webhooks.Rollout && t != webhooks.PreRollout {
			field(at("onError"), "applies to rollout and pre-rollout hooks only, not %s", t)
		}
		switch s.OnDeadline {
		case "", "hold":
		case "rollback":
			h.RollbackOnDeadline = true
		default:
			field(at("onDeadline"), "%q: want hold or rollback", s.OnDeadline)
		}
		if (s.OnDeadline != "" || s.Deadline.Duration != 0) && !t.Gate() {
			field(at("deadline"), "deadlines apply to gates (confirm-*) only, not %s", t)
		}
		if h.Deadline < time.Second {
			field(at("deadline"), "%s is shorter than 1s", h.Deadline)
		}
		if h.PollInterval < time.Second {
			field(at("pollInterval"), "%s is shorter than 1s", h.PollInterval)
		}
		if s.Thresholds != nil {
			if t != webhooks.Rollout {
				field(at("thresholds"), "apply to rollout hooks (load tests) only, not %s", t)
			}
			th := s.Thresholds
			if th.MinSuccess != nil && (*th.MinSuccess < 0 || *th.MinSuccess > 1) {
				field(at("thresholds.minSuccess"), "%g: a ratio in 0..1", *th.MinSuccess)
			}
			for name, v := range map[string]*float64{"maxP95Ms": th.MaxP95Ms, "maxP99Ms": th.MaxP99Ms} {
				if v != nil && *v <= 0 {
					field(at("thresholds."+name), "%g: must be positive", *v)
				}
			}
		}
		out = append(out, h)
	}
	return out
}

// validateHookURL accepts absolute http(s) URLs without credentials: a
// password in a policy file would end up in logs and status messages.
func validateHookURL(s string) error {
	if s == "" {
		return fmt.Errorf("required")
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%q is not a URL", s)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%q: the scheme must be http or https", s)
	}
	if u.Host == "" {
		return fmt.Errorf("%q has no host", s)
	}
	if u.User != nil {
		return fmt.Errorf("credentials in the URL are not allowed: sign calls with webhookSecret instead")
	}
	return nil
}

func buildSlack(s *SlackSpec, field func(f, format string, args ...any)) *Slack {
	if s == nil {
		return nil
	}
	out := &Slack{Secret: s.Secret, Channel: s.Channel}
	if !validDNSSubdomain(s.Secret) {
		field("slack.secret", "%q: want the name of a Secret in fledge's namespace", s.Secret)
	}
	if s.Channel != "" && (len(s.Channel) > 80 || strings.ContainsAny(s.Channel, " \t\n")) {
		field("slack.channel", "%q: want a channel name or id", s.Channel)
	}
	if len(s.Events) > 0 {
		out.Events = map[string]bool{}
		for i, e := range s.Events {
			known := false
			for _, k := range notificationEvents {
				known = known || k == e
			}
			if !known {
				field(fmt.Sprintf("slack.events[%d]", i), "%q: want one of %v", e, notificationEvents)
			}
			out.Events[e] = true
		}
	}
	return out
}

func validateSecretRef(r SecretRef, at string, field func(f, format string, args ...any)) {
	if !validName(r.Name) && !validDNSSubdomain(r.Name) {
		field(at+".name", "%q: want a Secret name", r.Name)
	}
	if r.Key == "" || len(r.Key) > 253 || strings.ContainsAny(r.Key, "/ \t\n") {
		field(at+".key", "%q: want a key of the Secret", r.Key)
	}
}

func validDNSSubdomain(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, part := range strings.Split(s, ".") {
		if !validName(part) {
			return false
		}
	}
	return true
}
