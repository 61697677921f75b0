package mesh

import (
	"maps"
	"slices"
	"strings"

	networking "istio.io/api/networking/v1alpha3"
)

// responseCookies extracts the cookies a route's headers.response asks
// Envoy to set: "set-cookie" entries of set and add. Only name=value
// matters to a client that replays cookies; attributes (Path, Max-Age...)
// are dropped.
func responseCookies(h *networking.Headers) map[string]string {
	resp := h.GetResponse()
	var out map[string]string
	for _, ops := range []map[string]string{resp.GetSet(), resp.GetAdd()} {
		for key, value := range ops {
			if !strings.EqualFold(key, "set-cookie") {
				continue
			}
			name, val, ok := parseSetCookie(value)
			if !ok {
				continue
			}
			if out == nil {
				out = map[string]string{}
			}
			out[name] = val
		}
	}
	return out
}

// parseSetCookie reads the name=value before the first ';' of a
// Set-Cookie value.
func parseSetCookie(v string) (name, value string, ok bool) {
	pair, _, _ := strings.Cut(v, ";")
	name, value, ok = strings.Cut(strings.TrimSpace(pair), "=")
	name = strings.TrimSpace(name)
	if !ok || name == "" {
		return "", "", false
	}
	return name, strings.TrimSpace(value), true
}

// mergeCookies combines route-level and destination-level cookies;
// destination-level headers come later in Envoy's response and win.
func mergeCookies(route, dest map[string]string) map[string]string {
	if len(dest) == 0 {
		return route
	}
	if len(route) == 0 {
		return dest
	}
	out := maps.Clone(route)
	maps.Copy(out, dest)
	return out
}

// parseCookieHeader reads a "cookie" request header ("a=1; b=2") into m.
func parseCookieHeader(header string, m map[string]string) {
	for part := range strings.SplitSeq(header, ";") {
		name, value, ok := strings.Cut(strings.TrimSpace(part), "=")
		if ok && name != "" {
			m[name] = value
		}
	}
}

// formatCookieHeader writes cookies as a "cookie" request header, sorted by
// name so that requests are reproducible.
func formatCookieHeader(cookies map[string]string) string {
	names := slices.Sorted(maps.Keys(cookies))
	var sb strings.Builder
	for i, name := range names {
		if i > 0 {
			sb.WriteString("; ")
		}
		sb.WriteString(name)
		sb.WriteByte('=')
		sb.WriteString(cookies[name])
	}
	return sb.String()
}
