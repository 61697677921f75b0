package loadtest

import (
	"fmt"
	"net"
	"slices"
	"strings"
)

// Allowlist is the set of hosts a tester may send load to. The metadata
// comes from policies that many people may write, and the tester runs
// inside the cluster: without a list it would send any rate of requests to
// any address it can reach.
type Allowlist struct {
	exact    map[string]bool
	suffixes []string // ".svc.cluster.local" for "*.svc.cluster.local"
	patterns []string // as given, for messages
}

// ParseAllowlist reads host patterns: an exact host ("shop.demo",
// "10.0.0.7") or "*." and a suffix ("*.svc.cluster.local", which allows
// any host under it but not svc.cluster.local itself). Ports, schemes and
// paths are not part of a pattern. An entry may hold several patterns
// separated by commas.
func ParseAllowlist(entries []string) (Allowlist, error) {
	a := Allowlist{exact: map[string]bool{}}
	for _, entry := range entries {
		for p := range strings.SplitSeq(entry, ",") {
			p = normalizeHost(p)
			if p == "" {
				continue
			}
			if err := checkPattern(p); err != nil {
				return Allowlist{}, fmt.Errorf("allow pattern %q: %w", p, err)
			}
			if suffix, ok := strings.CutPrefix(p, "*"); ok {
				a.suffixes = append(a.suffixes, suffix)
			} else {
				a.exact[p] = true
			}
			a.patterns = append(a.patterns, p)
		}
	}
	if len(a.patterns) == 0 {
		return Allowlist{}, fmt.Errorf("allowlist: no host pattern; name the hosts load may go to, e.g. *.svc.cluster.local")
	}
	return a, nil
}

func checkPattern(p string) error {
	rest, wildcard := strings.CutPrefix(p, "*.")
	switch {
	case p == "*" || p == "*.":
		return fmt.Errorf("allows every host; name a suffix such as *.svc.cluster.local")
	case strings.HasPrefix(p, "*") && !wildcard:
		return fmt.Errorf(`a wildcard must be "*." and a suffix`)
	case strings.Contains(rest, "*"):
		return fmt.Errorf("only a leading *. is supported")
	case net.ParseIP(p) != nil:
		return nil
	case strings.ContainsAny(p, ":/@?# "):
		return fmt.Errorf("a host only: no scheme, port, path or credentials")
	}
	return nil
}

// Allows reports whether load may go to host (a URL's Hostname).
func (a Allowlist) Allows(host string) bool {
	host = normalizeHost(host)
	if host == "" {
		return false
	}
	if a.exact[host] {
		return true
	}
	return slices.ContainsFunc(a.suffixes, func(s string) bool {
		return len(host) > len(s) && strings.HasSuffix(host, s)
	})
}

// String lists the patterns, for messages.
func (a Allowlist) String() string { return strings.Join(a.patterns, ", ") }

// normalizeHost makes host names comparable: DNS is case-insensitive and
// "a.b." is "a.b".
func normalizeHost(h string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(h)), ".")
}
