package hookclient

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"
)

// Hook URLs come from policies, and the engine runs inside a cluster, often
// on a cloud VM: a URL pointing at the instance metadata service would hand
// whoever writes it the node's credentials, read back through the hook's
// answer in the Flight's status. So the address is checked where it is
// finally known: at dial time, on the resolved IP, for every IP the dialer
// tries. That covers names that resolve (or re-resolve, DNS rebinding) to a
// metadata address and redirects alike, which a check of the URL alone
// would not.
//
// Loopback and private ranges stay allowed: in-cluster services and the
// sandbox live there, and policies are written by admins who can reach
// them anyway.

// Addresses refused unless the call allows link-local ones.
var (
	linkLocal4 = netip.MustParsePrefix("169.254.0.0/16") // includes 169.254.169.254 (AWS, GCP, Azure, ...)
	linkLocal6 = netip.MustParsePrefix("fe80::/10")      // IPv6 link-local
	awsIMDS6   = netip.MustParseAddr("fd00:ec2::254")    // AWS metadata over IPv6 (Nitro)
	alibaba    = netip.MustParseAddr("100.100.100.200")  // Alibaba Cloud metadata
	nat64      = netip.MustParsePrefix("64:ff9b::/96")   // well-known NAT64 prefix: embeds an IPv4 address
	thisNet    = netip.MustParsePrefix("0.0.0.0/8")      // "this network": Linux dials 0.x.x.x as local
	broadcast  = netip.MustParseAddr("255.255.255.255")  // limited broadcast
)

// refusedError is a dial refused by the address policy. It is told apart
// from other transport errors: it is not retried (the answer would be the
// same) and its message is the whole story.
type refusedError struct {
	addr   netip.Addr
	reason string
}

func (e *refusedError) Error() string {
	return fmt.Sprintf("refused: %s is %s", e.addr, e.reason)
}

// checkAddr applies the address policy to one resolved IP.
func checkAddr(ip netip.Addr, allowLinkLocal bool) error {
	ip = ip.WithZone("")
	// An IPv4 address may hide inside an IPv6 one: ::ffff:a.b.c.d is dialed
	// as a.b.c.d, and a NAT64 gateway forwards 64:ff9b::a.b.c.d to it.
	v4 := ip.Unmap()
	if nat64.Contains(ip) {
		b := ip.As16()
		v4 = netip.AddrFrom4([4]byte(b[12:]))
	}
	for _, a := range []netip.Addr{ip, v4} {
		switch {
		case a.IsUnspecified() || (a.Is4() && thisNet.Contains(a)):
			return &refusedError{ip, "an unspecified address"}
		case a.IsMulticast() || a == broadcast:
			return &refusedError{ip, "a multicast or broadcast address"}
		case allowLinkLocal:
		case linkLocal4.Contains(a) || linkLocal6.Contains(a) || a == awsIMDS6 || a == alibaba:
			return &refusedError{ip, "a link-local/cloud-metadata address"}
		}
	}
	return nil
}

// dialControl is the net.Dialer hook: it runs after resolution, before
// connect, with the IP about to be dialed.
func dialControl(allowLinkLocal bool) func(network, address string, _ syscall.RawConn) error {
	return func(network, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			// The dialer always hands an IP:port; anything else is refused
			// rather than let through unchecked.
			return fmt.Errorf("refused: cannot check %s address %q: %w", network, address, err)
		}
		return checkAddr(ap.Addr(), allowLinkLocal)
	}
}

// newTransport returns a transport whose dials obey the address policy.
//
// A call's AllowLinkLocal picks one of two transports instead of riding in
// the request's context: the connection pool is keyed by host and port, so
// a connection dialed for a call that allowed link-local would otherwise be
// reused by one that did not.
func newTransport(allowLinkLocal bool, tlsConfig *tls.Config, resolver *net.Resolver) *http.Transport {
	d := &net.Dialer{
		// The attempt's context bounds the call; this bounds a dial the
		// transport carries on in the background after the call gave up.
		Timeout:   30 * time.Second,
		KeepAlive: 30 * time.Second,
		Control:   dialControl(allowLinkLocal),
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
