package mesh

import (
	"net"
	"strings"
)

// clusterDomainSuffix is the Kubernetes service domain Istio assumes.
const clusterDomainSuffix = ".svc.cluster.local"

// qualifyHost expands a host written in an Istio rule the way Istio does
// (ResolveShortnameToFQDN): a name without dots is a Service in the rule's
// own namespace; anything with a dot, and the "*" wildcard, is taken as
// written. Note that this follows the rule's namespace, not the Service's:
// "reviews" in a VirtualService in namespace a is reviews.a.svc.cluster.local
// even if reviews lives elsewhere.
func qualifyHost(host, namespace string) string {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if host == "*" || strings.Contains(host, ".") {
		return host
	}
	return host + "." + namespace + clusterDomainSuffix
}

// serviceHost is the fully qualified host of a Kubernetes Service.
func serviceHost(name, namespace string) string {
	return name + "." + namespace + clusterDomainSuffix
}

// isWildcard reports whether a VirtualService host is a wildcard pattern.
func isWildcard(host string) bool {
	return strings.HasPrefix(host, "*")
}

// wildcardMatches reports whether host falls under pattern, which is "*" or
// "*.suffix". Like Envoy's suffix wildcards, the "*" stands for one or more
// characters, dots included.
func wildcardMatches(pattern, host string) bool {
	if pattern == "*" {
		return true
	}
	suffix := pattern[1:] // ".example.com"
	return len(host) > len(suffix) && strings.HasSuffix(host, suffix)
}

// authorityHost strips an optional port and lower-cases the authority a
// client sent.
func authorityHost(authority string) string {
	if h, _, err := net.SplitHostPort(authority); err == nil {
		authority = h
	}
	return strings.ToLower(strings.TrimSuffix(authority, "."))
}

// resolveAuthority turns the authority a client called into the host the
// routing table is keyed by. In a real mesh Envoy's virtual host for a
// Service lists the names DNS search paths accept from the caller's
// namespace ("app", "app.ns", "app.ns.svc", the FQDN); this reproduces that
// without enumerating the aliases.
func (t *table) resolveAuthority(authority, namespace string) string {
	host := authorityHost(authority)
	switch dots := strings.Count(host, "."); {
	case dots == 0:
		return host + "." + namespace + clusterDomainSuffix
	case strings.HasSuffix(host, ".svc"):
		return host + ".cluster.local"
	case dots == 1 && !t.knowsHost(host):
		// "app.other" is app in namespace other, unless a rule claims the
		// two-label name literally.
		return host + clusterDomainSuffix
	}
	return host
}

// knowsHost reports whether some VirtualService or Service has host as its
// literal name.
func (t *table) knowsHost(host string) bool {
	if _, ok := t.vhosts[host]; ok {
		return true
	}
	_, ok := t.services[host]
	return ok
}

// virtualHostFor finds the VirtualService that routes host: an exact host
// first, then the most specific wildcard, as Envoy picks virtual hosts by
// domain.
func (t *table) virtualHostFor(host string) *virtualHost {
	if vh, ok := t.vhosts[host]; ok {
		return vh
	}
	for _, vh := range t.wildcards {
		if wildcardMatches(vh.host, host) {
			return vh
		}
	}
	return nil
}
