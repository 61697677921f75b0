package hookclient

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Hook URLs come from policies, and the engine runs inside a cluster, often
// on a cloud VM, with a network position nobody else has: a hook's answer is
// quoted in the Flight's status, so a URL pointing at the instance metadata
// service, the API server or a kubelet would read them for whoever writes
// it, and a URL pointing at loopback would reach the engine's own node. So
// the address is checked where it is finally known: at dial time, on the
// resolved IP and port, for every IP the dialer tries. That covers names
// that resolve (or re-resolve, DNS rebinding) to a refused address and
// redirects alike, which a check of the URL alone would not.
//
// A call may reach public addresses. Refused:
//   - unspecified, multicast and broadcast addresses, always;
//   - the cluster's API server (the addresses given to WithDeniedAddrs) and
//     the kubelet's ports, 10250 and 10255, on any address, always;
//   - link-local and cloud-metadata addresses, unless the hook's
//     allowLinkLocal says otherwise;
//   - loopback, unless the policy file's hookNetworks has an entry that is
//     itself loopback (127.0.0.0/8 or a part of it, ::1/128): an entry
//     such as 0.0.0.0/0 does not open the node's own services;
//   - private ranges (10/8, 172.16/12, 192.168/16, the carrier-grade NAT
//     100.64/10, fc00::/7), unless inside an entry of hookNetworks: in-cluster
//     services live there, but so do the nodes and the control plane, and
//     the admin says which part hooks may call.
//
// An IPv4 address hiding in an IPv6 one (::ffff:a.b.c.d, dialed as
// a.b.c.d, or 64:ff9b::a.b.c.d, which a NAT64 gateway forwards to it) is
// judged as the IPv4 address.

// Addresses refused unless the call allows link-local ones.
var (
	linkLocal4 = netip.MustParsePrefix("169.254.0.0/16") // includes 169.254.169.254 (AWS, GCP, Azure, ...)
	linkLocal6 = netip.MustParsePrefix("fe80::/10")      // IPv6 link-local
	awsIMDS6   = netip.MustParseAddr("fd00:ec2::254")    // AWS metadata over IPv6 (Nitro)
	alibaba    = netip.MustParseAddr("100.100.100.200")  // Alibaba Cloud metadata
)

var (
	nat64     = netip.MustParsePrefix("64:ff9b::/96")  // well-known NAT64 prefix: embeds an IPv4 address
	thisNet   = netip.MustParsePrefix("0.0.0.0/8")     // "this network": Linux dials 0.x.x.x as local
	broadcast = netip.MustParseAddr("255.255.255.255") // limited broadcast
	cgnat     = netip.MustParsePrefix("100.64.0.0/10") // carrier-grade NAT, private in practice (RFC 6598)
	loopback6 = netip.MustParsePrefix("::1/128")       // the IPv6 loopback, as a network
	loopback4 = netip.MustParsePrefix("127.0.0.0/8")   // the IPv4 loopback network
)

// kubeletPorts are the kubelet's API and its read-only port.
var kubeletPorts = []uint16{10250, 10255}

// refusedError is a dial refused by the address policy. It is told apart
// from other transport errors: it is not retried (the answer would be the
// same) and its message is the whole story: what was refused, by which
// rule, and how to allow it where something can.
type refusedError struct {
	addr   string // the IP, or IP:port when the rule is about the port
	reason string
}

func (e *refusedError) Error() string {
	return fmt.Sprintf("refused: %s is %s", e.addr, e.reason)
}

// addrPolicy is what a call may dial.
type addrPolicy struct {
	// allowLinkLocal and networks come with the call, from the policy.
	allowLinkLocal bool
	networks       []netip.Prefix // canonical (see canonicalNetworks)
	// denied comes with the client: unmapped, port 0 for every port.
	denied []netip.AddrPort
}

// key tells apart the policies whose connections must not be shared.
func (p *addrPolicy) key() string {
	var b strings.Builder
	b.WriteString(strconv.FormatBool(p.allowLinkLocal))
	for _, n := range p.networks {
		b.WriteByte(' ')
		b.WriteString(n.String())
	}
	return b.String()
}

// canonicalNetworks returns the valid networks, masked, IPv4-mapped ones
// as IPv4, sorted, without duplicates: two lists allowing the same
// networks in another order share a key.
func canonicalNetworks(in []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for _, n := range in {
		if !n.IsValid() {
			continue
		}
		if n.Addr().Is4In6() && n.Bits() >= 96 {
			n = netip.PrefixFrom(n.Addr().Unmap(), n.Bits()-96)
		}
		out = append(out, n.Masked())
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return slices.Compact(out)
}

// check applies the address policy to one resolved IP and port.
func (p *addrPolicy) check(ap netip.AddrPort) error {
	ip := ap.Addr().WithZone("")
	port := ap.Port()
	withPort := netip.AddrPortFrom(ip, port).String()
	forms := []netip.Addr{ip.Unmap()}
	if nat64.Contains(ip) {
		b := ip.As16()
		forms = append(forms, netip.AddrFrom4([4]byte(b[12:])))
	}
	for _, a := range forms {
		switch {
		case a.IsUnspecified() || (a.Is4() && thisNet.Contains(a)):
			return &refusedError{ip.String(), "an unspecified address"}
		case a.IsMulticast() || a == broadcast:
			return &refusedError{ip.String(), "a multicast or broadcast address"}
		case p.isDenied(a, port):
			return &refusedError{withPort, "the cluster's API server, which hooks never call (no policy setting allows it)"}
		case slices.Contains(kubeletPorts, port):
			return &refusedError{withPort, "a kubelet port (10250 and 10255 are never called, on any address)"}
		case linkLocal4.Contains(a) || linkLocal6.Contains(a) || a == awsIMDS6 || a == alibaba:
			if p.allowLinkLocal {
				continue // the policy's explicit opt-in to this address
			}
			return &refusedError{ip.String(), "a link-local/cloud-metadata address (the hook's allowLinkLocal allows it)"}
		case a.IsLoopback():
			if !p.allowsLoopback(a) {
				return &refusedError{ip.String(), "a loopback address (allowed only by a loopback entry of the policy file's hookNetworks, such as 127.0.0.0/8)"}
			}
		case a.IsPrivate() || cgnat.Contains(a):
			if !p.allows(a) {
				return &refusedError{ip.String(), "a private address not in the policy file's hookNetworks (add a CIDR that covers it to allow it)"}
			}
		}
	}
	return nil
}

func (p *addrPolicy) isDenied(a netip.Addr, port uint16) bool {
	for _, d := range p.denied {
		if d.Addr() == a && (d.Port() == 0 || d.Port() == port) {
			return true
		}
	}
	return false
}

// allows reports whether an entry of hookNetworks holds a.
func (p *addrPolicy) allows(a netip.Addr) bool {
	for _, n := range p.networks {
		if n.Contains(a) {
			return true
		}
	}
	return false
}

// allowsLoopback reports whether an entry of hookNetworks that is loopback
// itself holds a.
func (p *addrPolicy) allowsLoopback(a netip.Addr) bool {
	for _, n := range p.networks {
		if n.Contains(a) && (n.Bits() >= 8 && loopback4.Contains(n.Addr()) || n == loopback6) {
			return true
		}
	}
	return false
}

// dialControl is the net.Dialer hook: it runs after resolution, before
// connect, with the IP and port about to be dialed.
func dialControl(p *addrPolicy) func(network, address string, _ syscall.RawConn) error {
	return func(network, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			// The dialer always hands an IP:port; anything else is refused
			// rather than let through unchecked.
			return fmt.Errorf("refused: cannot check %s address %q: %w", network, address, err)
		}
		return p.check(ap)
	}
}

// newTransport returns a transport whose dials obey the address policy.
//
// A call's policy (AllowLinkLocal, Networks) picks a transport instead of
// riding in the request's context: the connection pool is keyed by host
// and port, so a connection dialed for a call that could reach an address
// would otherwise be reused by one that could not.
func newTransport(p *addrPolicy, tlsConfig *tls.Config, resolver *net.Resolver) *http.Transport {
	d := &net.Dialer{
		// The attempt's context bounds the call; this bounds a dial the
		// transport carries on in the background after the call gave up.
		Timeout:   30 * time.Second,
		KeepAlive: 30 * time.Second,
		Control:   dialControl(p),
		Resolver:  resolver,
	}
	return &http.Transport{
		// No proxy, whatever the environment says: through a proxy the
		// dial would check the proxy's address, not the hook's.
		Proxy:                 nil,
		DialContext:           d.DialContext,
		ForceAttemptHTTP2:     true,
		TLSClientConfig:       tlsConfig.Clone(),
		TLSHandshakeTimeout:   10 * time.Second,
		MaxIdleConns:          100,
		MaxIdleConnsPerHost:   8,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}

// APIServerAddrs returns the addresses of the cluster's API server that a
// process knows without asking anyone, for WithDeniedAddrs: in a pod,
// KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT (the Service
// kubernetes.default), and the host of the URL the process talks to the API
// server at (rest.Config's Host, a kubeconfig's server), each when it is an
// IP address. Names are left out: they are resolved at dial time, where
// only addresses are seen. The API server's endpoints (kubectl get
// endpoints kubernetes) are worth denying too; they are usually private
// addresses, refused anyway unless hookNetworks covers them.
func APIServerAddrs(getenv func(string) string, serverURL string) []netip.AddrPort {
	var out []netip.AddrPort
	if ip, err := netip.ParseAddr(getenv("KUBERNETES_SERVICE_HOST")); err == nil {
		// An unreadable port denies every port of the address.
		port, _ := strconv.ParseUint(getenv("KUBERNETES_SERVICE_PORT"), 10, 16)
		out = append(out, netip.AddrPortFrom(ip, uint16(port)))
	}
	if serverURL != "" {
		if !strings.Contains(serverURL, "://") {
			serverURL = "https://" + serverURL // how client-go reads a bare host
		}
		if u, err := url.Parse(serverURL); err == nil {
			if ip, err := netip.ParseAddr(u.Hostname()); err == nil {
				port, err := strconv.ParseUint(u.Port(), 10, 16)
				switch {
				case err == nil:
				case u.Scheme == "http":
					port = 80
				default:
					port = 443
				}
				out = append(out, netip.AddrPortFrom(ip, uint16(port)))
			}
		}
	}
	return canonicalDenied(out)
}

// canonicalDenied returns the addresses unmapped, without zones or
// duplicates.
func canonicalDenied(in []netip.AddrPort) []netip.AddrPort {
	var out []netip.AddrPort
	for _, d := range in {
		if !d.Addr().IsValid() {
			continue
		}
		d = netip.AddrPortFrom(d.Addr().Unmap().WithZone(""), d.Port())
		if !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	return out
}
