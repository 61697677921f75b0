package hookclient

import (
	"context"
	"encoding/binary"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestCheckAddr(t *testing.T) {
	// The client's denied addresses in every case: an API server's
	// Service on port 443, and one denied on every port.
	denied := canonicalDenied([]netip.AddrPort{
		netip.MustParseAddrPort("10.96.0.1:443"), netip.MustParseAddrPort("[fd00:10:96::1]:443"), netip.MustParseAddrPort("192.0.2.10:0"),
	})
	tests := []struct {
		name           string
		addr           string // an IP dialed on port 443, or IP:port
		allowLinkLocal bool
		networks       string // the policy file's hookNetworks, comma-separated
		refused        string // part of the refusal, "" for allowed
	}{
		{"allows public addresses", "93.184.216.34", false, "", ""},
		{"allows public IPv6 addresses", "2606:2800:220:1:248:1893:25c8:1946", false, "", ""},

		{"refuses the cloud metadata address", "169.254.169.254", false, "", "link-local/cloud-metadata"},
		{"refuses any IPv4 link-local address", "169.254.170.2", false, "", "link-local/cloud-metadata"},
		{"refuses IPv6 link-local", "fe80::1", false, "", "link-local/cloud-metadata"},
		{"refuses IPv6 link-local with a zone", "fe80::1%eth0", false, "", "link-local/cloud-metadata"},
		{"refuses AWS metadata over IPv6", "fd00:ec2::254", false, "", "link-local/cloud-metadata"},
		{"refuses Alibaba metadata", "100.100.100.200", false, "", "link-local/cloud-metadata"},
		{"refuses the metadata address mapped into IPv6", "::ffff:169.254.169.254", false, "", "link-local/cloud-metadata"},
		{"refuses the metadata address behind NAT64", "64:ff9b::a9fe:a9fe", false, "", "link-local/cloud-metadata"},
		{"says how to allow link-local", "169.254.169.254", false, "", "the hook's allowLinkLocal allows it"},
		{"allows link-local when the policy opts in", "169.254.169.254", true, "", ""},
		{"allows IPv6 link-local when the policy opts in", "fe80::1", true, "", ""},
		{"allows Alibaba metadata when the policy opts in, although it is CGNAT", "100.100.100.200", true, "", ""},
		{"allows AWS IPv6 metadata when the policy opts in, although it is unique-local", "fd00:ec2::254", true, "", ""},
		{"does not open link-local through hookNetworks", "169.254.169.254", false, "169.254.0.0/16", "link-local/cloud-metadata"},

		{"refuses loopback", "127.0.0.1", false, "", "a loopback address (allowed only by a loopback entry of the policy file's hookNetworks, such as 127.0.0.0/8)"},
		{"refuses the rest of 127.0.0.0/8", "127.1.2.3", false, "", "loopback"},
		{"refuses IPv6 loopback", "::1", false, "", "loopback"},
		{"refuses loopback mapped into IPv6", "::ffff:127.0.0.1", false, "", "loopback"},
		{"refuses loopback behind NAT64", "64:ff9b::7f00:1", false, "", "loopback"},
		{"refuses loopback although private networks are allowed", "127.0.0.1", false, "10.0.0.0/8", "loopback"},
		{"refuses loopback for an entry that is not loopback itself", "127.0.0.1", false, "0.0.0.0/0", "loopback"},
		{"refuses IPv6 loopback for an entry that is not loopback itself", "::1", false, "::/0", "loopback"},
		{"refuses loopback outside the loopback entry", "127.0.0.1", false, "127.0.0.2/32", "loopback"},
		{"allows loopback inside a loopback entry", "127.0.0.1", false, "127.0.0.0/8", ""},
		{"allows loopback mapped into IPv6 inside an IPv4 loopback entry", "::ffff:127.0.0.1", false, "127.0.0.0/8", ""},
		{"allows loopback inside an IPv4-mapped loopback entry", "127.0.0.1", false, "::ffff:127.0.0.0/104", ""},
		{"allows IPv6 loopback with ::1/128", "::1", false, "::1/128", ""},

		{"refuses a private address, saying how to allow it", "10.96.0.12", false, "", "a private address not in the policy file's hookNetworks (add a CIDR that covers it to allow it)"},
		{"refuses 172.16.0.0/12", "172.20.1.1", false, "", "private"},
		{"refuses 192.168.0.0/16", "192.168.1.20", false, "", "private"},
		{"refuses carrier-grade NAT addresses", "100.64.0.1", false, "", "private"},
		{"refuses unique-local IPv6", "fd00:ec2::253", false, "", "private"},
		{"refuses a private address mapped into IPv6", "::ffff:10.0.0.1", false, "", "private"},
		{"refuses a private address behind NAT64", "64:ff9b::a00:1", false, "", "private"},
		{"refuses a private address outside hookNetworks", "10.97.0.1", false, "10.96.0.0/16, 192.168.0.0/16", "private"},
		{"allows a private address inside hookNetworks", "10.96.0.12", false, "10.96.0.0/12", ""},
		{"allows a private address inside any entry of hookNetworks", "192.168.1.20", false, "10.96.0.0/12, 192.168.1.0/24", ""},
		{"allows a mapped private address inside hookNetworks", "::ffff:10.96.0.12", false, "10.96.0.0/12", ""},
		{"allows unique-local IPv6 inside hookNetworks", "fd00:10:244::5", false, "fd00:10::/32", ""},
		{"allows private addresses inside an entry of everything", "10.1.2.3", false, "0.0.0.0/0", ""},

		{"refuses the kubelet port on a public address", "93.184.216.34:10250", false, "", "93.184.216.34:10250 is a kubelet port"},
		{"refuses the kubelet's read-only port", "93.184.216.34:10255", false, "", "kubelet port"},
		{"refuses the kubelet port on an allowed private address", "10.0.0.5:10250", false, "10.0.0.0/8", "kubelet port"},
		{"refuses the kubelet port on allowed loopback", "127.0.0.1:10250", false, "127.0.0.0/8", "kubelet port"},
		{"refuses the kubelet port on IPv6 loopback", "[::1]:10250", false, "::1/128", "kubelet port"},

		{"refuses the API server", "10.96.0.1:443", false, "10.0.0.0/8", "10.96.0.1:443 is the cluster's API server"},
		{"refuses the API server mapped into IPv6", "[::ffff:10.96.0.1]:443", false, "10.0.0.0/8", "the cluster's API server"},
		{"refuses the API server behind NAT64", "[64:ff9b::a60:1]:443", false, "0.0.0.0/0", "the cluster's API server"},
		{"refuses an IPv6 API server", "[fd00:10:96::1]:443", false, "fd00::/8", "the cluster's API server"},
		{"refuses every port of an address denied without a port", "192.0.2.10:8080", false, "", "the cluster's API server"},
		{"allows another port of the API server's address when hookNetworks does", "10.96.0.1:8080", false, "10.0.0.0/8", ""},

		{"refuses the unspecified address", "0.0.0.0", false, "", "unspecified"},
		{"refuses the unspecified address even when link-local is allowed", "0.0.0.0", true, "0.0.0.0/0", "unspecified"},
		{"refuses the rest of 0.0.0.0/8, which Linux dials as local", "0.1.2.3", true, "", "unspecified"},
		{"refuses the IPv6 unspecified address", "::", true, "::/0", "unspecified"},
		{"refuses multicast", "224.0.0.1", true, "0.0.0.0/0", "multicast"},
		{"refuses IPv6 multicast", "ff02::1", true, "", "multicast"},
		{"refuses broadcast", "255.255.255.255", true, "", "broadcast"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ap, err := netip.ParseAddrPort(tt.addr)
			if err != nil {
				ap = netip.AddrPortFrom(netip.MustParseAddr(tt.addr), 443)
			}
			var networks []netip.Prefix
			for n := range strings.SplitSeq(tt.networks, ",") {
				if n = strings.TrimSpace(n); n != "" {
					networks = append(networks, netip.MustParsePrefix(n))
				}
			}
			p := &addrPolicy{allowLinkLocal: tt.allowLinkLocal, networks: canonicalNetworks(networks), denied: denied}
			err = p.check(ap)
			switch {
			case tt.refused == "" && err != nil:
				t.Fatalf("check(%s) = %v, want allowed", ap, err)
			case tt.refused != "" && (err == nil || !strings.Contains(err.Error(), tt.refused)):
				t.Fatalf("check(%s) = %v, want refused as %q", ap, err, tt.refused)
			}
		})
	}
}

func TestDoRefusesAddressesAtDialTime(t *testing.T) {
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {})
	port := mustURL(t, srv.URL).Port()
	dns := newFakeDNS(t)
	tests := []struct {
		name           string
		url            string
		resolvesTo     string // what the fake DNS answers
		allowLinkLocal bool
		want           string // part of the message
	}{
		{"refuses the metadata address", "http://169.254.169.254/latest/meta-data/", "", false,
			"POST http://169.254.169.254/latest/meta-data/: refused: 169.254.169.254 is a link-local/cloud-metadata address"},
		{"refuses IPv6 link-local", "http://[fe80::1]:" + port + "/", "", false, "refused: fe80::1 is a link-local/cloud-metadata address"},
		{"refuses a name that resolves to the metadata address", "http://metadata.fledge.test:" + port + "/", "169.254.169.254", false,
			"refused: 169.254.169.254 is a link-local/cloud-metadata address"},
		{"refuses 0.0.0.0 although a server listens on that port", "http://0.0.0.0:" + port + "/", "", false, "refused: 0.0.0.0 is an unspecified address"},
		{"refuses [::] although a server listens on that port", "http://[::]:" + port + "/", "", true, "refused: :: is an unspecified address"},
		{"refuses multicast", "http://224.0.0.1/", "", true, "refused: 224.0.0.1 is a multicast or broadcast address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.resolvesTo != "" {
				dns.answer(tt.resolvesTo)
			}
			c := New(withResolver(dns.resolver), WithBackoff(time.Millisecond, time.Millisecond))
			res := c.Do(context.Background(), Call{URL: tt.url, Timeout: 2 * time.Second, Retries: 3, AllowLinkLocal: tt.allowLinkLocal, Payload: testPayload})
			if res.Outcome != Error || !strings.Contains(res.Message, tt.want) {
				t.Fatalf("Do = %s %q, want error %q", res.Outcome, res.Message, tt.want)
			}
			if res.Attempts != 1 {
				t.Fatalf("Do made %d attempts, want 1: a refusal is not retried", res.Attempts)
			}
		})
	}
}

func TestDoChecksEveryDialNotTheURL(t *testing.T) {
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {})
	u := "http://hook.fledge.test:" + mustURL(t, srv.URL).Port() + "/"
	dns := newFakeDNS(t)
	c := New(withResolver(dns.resolver))
	call := Call{Networks: loopback, URL: u, Timeout: 2 * time.Second, Payload: testPayload}

	dns.answer("127.0.0.1")
	if res := c.Do(context.Background(), call); res.Outcome != OK {
		t.Fatalf("Do while the name resolves to loopback = %s %q, want ok", res.Outcome, res.Message)
	}
	// The name now rebinds to the metadata address; the next dial must see it.
	c.CloseIdleConnections()
	dns.answer("169.254.169.254")
	if res := c.Do(context.Background(), call); res.Outcome != Error || !strings.Contains(res.Message, "refused: 169.254.169.254") {
		t.Fatalf("Do after the name rebound = %s %q, want refused", res.Outcome, res.Message)
	}
}

func TestDoReachesLinkLocalWhenAllowed(t *testing.T) {
	// Whether anything answers at 169.254.169.254 depends on where the test
	// runs; what matters is that the call went out instead of being refused.
	c := New()
	res := c.Do(context.Background(), Call{URL: "http://169.254.169.254/", Timeout: 200 * time.Millisecond, AllowLinkLocal: true, Payload: testPayload})
	if strings.Contains(res.Message, "refused: 169.254.169.254") {
		t.Fatalf("Do = %s %q, want the call made", res.Outcome, res.Message)
	}
}

// counting serves answers and counts the requests it gets.
func counting(t *testing.T, l net.Listener) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var hits atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	if l != nil {
		srv.Listener.Close()
		srv.Listener = l
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, &hits
}

// Loopback is refused by default whatever form the URL writes it in: the
// forms some resolver reads as 127.0.0.1 are refused before any lookup,
// the others when the dialer sees the address. The test servers listening
// there are never called.
func TestDoRefusesLoopbackInEveryForm(t *testing.T) {
	srv, hits := counting(t, nil)
	port := mustURL(t, srv.URL).Port()
	var hits6 *atomic.Int32
	port6 := "1"
	if l, err := net.Listen("tcp", "[::1]:0"); err == nil {
		var srv6 *httptest.Server
		srv6, hits6 = counting(t, l)
		port6 = mustURL(t, srv6.URL).Port()
	}
	dns := newFakeDNS(t)
	dns.answer("127.0.0.1")
	const atDial = "is a loopback address (allowed only by a loopback entry of the policy file's hookNetworks, such as 127.0.0.0/8)"
	const numeric = "reads as an IP address in a shortened, decimal, octal or hex form, which resolvers read differently: write the address in its usual form"
	tests := []struct {
		name     string
		url      string
		message  string // the whole message when the URL is refused, its end when the dial is
		attempts int
	}{
		{"refuses 127.0.0.1", "http://127.0.0.1:" + port + "/", "refused: 127.0.0.1 " + atDial, 1},
		{"refuses the rest of 127.0.0.0/8", "http://127.0.0.2:" + port + "/", "refused: 127.0.0.2 " + atDial, 1},
		{"refuses the shortened form 127.1", "http://127.1:" + port + "/", `hook URL http://127.1:` + port + `/ refused: host "127.1" ` + numeric, 0},
		{"refuses the decimal form 2130706433", "http://2130706433:" + port + "/", `hook URL http://2130706433:` + port + `/ refused: host "2130706433" ` + numeric, 0},
		{"refuses the octal form 0177.0.0.1", "http://0177.0.0.1:" + port + "/", `hook URL http://0177.0.0.1:` + port + `/ refused: host "0177.0.0.1" ` + numeric, 0},
		{"refuses the hex form 0x7f.0.0.1", "http://0x7f.0.0.1:" + port + "/", `hook URL http://0x7f.0.0.1:` + port + `/ refused: host "0x7f.0.0.1" ` + numeric, 0},
		{"refuses the hex form 0x7f000001", "http://0x7f000001:" + port + "/", `hook URL http://0x7f000001:` + port + `/ refused: host "0x7f000001" ` + numeric, 0},
		{"refuses a dotted form with a trailing dot", "http://127.0.0.1.:" + port + "/", `hook URL http://127.0.0.1.:` + port + `/ refused: host "127.0.0.1." ` + numeric, 0},
		{"refuses ::1", "http://[::1]:" + port6 + "/", "refused: ::1 " + atDial, 1},
		{"refuses 127.0.0.1 mapped into IPv6", "http://[::ffff:127.0.0.1]:" + port + "/", "refused: 127.0.0.1 " + atDial, 1},
		{"refuses 127.0.0.1 mapped into IPv6, in hex", "http://[::ffff:7f00:1]:" + port + "/", "refused: 127.0.0.1 " + atDial, 1},
		{"refuses a name that resolves to 127.0.0.1", "http://loop.fledge.test:" + port + "/", "refused: 127.0.0.1 " + atDial, 1},
		{"refuses localhost", "http://localhost:" + port + "/", atDial, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := New(withResolver(dns.resolver), WithBackoff(time.Millisecond, time.Millisecond))
			res := c.Do(context.Background(), Call{URL: tt.url, Timeout: 2 * time.Second, Retries: 2, Payload: testPayload})
			want := tt.message
			if tt.attempts > 0 {
				want = "POST " + tt.url + ": refused: "
			}
			if res.Outcome != Error || !strings.HasPrefix(res.Message, want) || !strings.Contains(res.Message, tt.message) || res.Attempts != tt.attempts {
				t.Fatalf("Do = %s %q after %d attempts, want error %q after %d (a refusal is not retried)", res.Outcome, res.Message, res.Attempts, want, tt.attempts)
			}
		})
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("the server on 127.0.0.1 was called %d times, want never", n)
	}
	if hits6 != nil && hits6.Load() != 0 {
		t.Fatalf("the server on ::1 was called %d times, want never", hits6.Load())
	}
}

// A redirect within the hook's own host is followed, but its dial is
// checked like the first: here the name rebinds to loopback between the
// two, and the connection is closed so that the redirect needs a new one.
func TestDoRefusesARedirectThatRebindsToLoopback(t *testing.T) {
	// The allowed server listens on 127.0.0.2, allowed by the call's
	// hookNetworks; the refused one on 127.0.0.1, at the same port.
	var allowed, refused net.Listener
	for i := 0; refused == nil; i++ {
		l, err := net.Listen("tcp", "127.0.0.2:0")
		if err != nil {
			t.Skipf("cannot listen on 127.0.0.2: %v", err)
		}
		if r, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(l.Addr().(*net.TCPAddr).Port)); err == nil {
			allowed, refused = l, r
			break
		}
		l.Close()
		if i > 20 {
			t.Skip("found no port free on both 127.0.0.1 and 127.0.0.2")
		}
	}
	dns := newFakeDNS(t)
	dns.answer("127.0.0.2")
	var first atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		first.Add(1)
		dns.answer("127.0.0.1")
		w.Header().Set("Connection", "close")
		http.Redirect(w, r, "/next", http.StatusTemporaryRedirect)
	}))
	srv.Listener.Close()
	srv.Listener = allowed
	srv.Start()
	t.Cleanup(srv.Close)
	_, hits := counting(t, refused)

	u := "http://hook.fledge.test:" + mustURL(t, srv.URL).Port() + "/start"
	c := New(withResolver(dns.resolver))
	res := c.Do(context.Background(), Call{URL: u, Networks: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}, Timeout: 2 * time.Second, Payload: testPayload})
	want := "POST " + u + ": refused: 127.0.0.1 is a loopback address"
	if res.Outcome != Error || !strings.HasPrefix(res.Message, want) || res.Attempts != 1 {
		t.Fatalf("Do = %s %q after %d attempts, want %q after 1", res.Outcome, res.Message, res.Attempts, want)
	}
	if first.Load() != 1 || hits.Load() != 0 {
		t.Fatalf("the allowed server was called %d times and the loopback one %d, want once and never", first.Load(), hits.Load())
	}
}

// The kubelet's ports are refused on every address, even one the policy
// allows.
func TestDoRefusesKubeletPorts(t *testing.T) {
	for _, port := range []string{"10250", "10255"} {
		t.Run(port, func(t *testing.T) {
			// A listener there, if the port is free, to see that no
			// connection is even opened.
			var conns atomic.Int32
			if l, err := net.Listen("tcp", "127.0.0.1:"+port); err == nil {
				t.Cleanup(func() { l.Close() })
				go func() {
					for {
						c, err := l.Accept()
						if err != nil {
							return
						}
						conns.Add(1)
						c.Close()
					}
				}()
			}
			u := "http://127.0.0.1:" + port + "/pods"
			res := New().Do(context.Background(), Call{URL: u, Networks: loopback, Timeout: time.Second, Retries: 2, Payload: testPayload})
			want := "POST " + u + ": refused: 127.0.0.1:" + port + " is a kubelet port (10250 and 10255 are never called, on any address)"
			if res.Outcome != Error || res.Message != want || res.Attempts != 1 {
				t.Fatalf("Do = %s %q after %d attempts, want %q after 1", res.Outcome, res.Message, res.Attempts, want)
			}
			if n := conns.Load(); n != 0 {
				t.Fatalf("%d connections to the kubelet port, want none", n)
			}
		})
	}
}

// The client's denied addresses (the API server's) are refused whatever
// the policy allows, under any name or form, and only at their port.
func TestDoRefusesTheAPIServer(t *testing.T) {
	api, hits := counting(t, nil)
	other, _ := counting(t, nil)
	apiAddr := netip.MustParseAddrPort(strings.TrimPrefix(api.URL, "http://"))
	port := strconv.Itoa(int(apiAddr.Port()))
	dns := newFakeDNS(t)
	dns.answer("127.0.0.1")
	c := New(WithDeniedAddrs(apiAddr), withResolver(dns.resolver))
	for _, u := range []string{
		api.URL + "/api/v1/secrets",
		"http://kubernetes.default.svc:" + port + "/api/v1/secrets",
		"http://[::ffff:127.0.0.1]:" + port + "/api/v1/secrets",
	} {
		res := c.Do(context.Background(), Call{URL: u, Networks: loopback, Timeout: time.Second, Retries: 2, Payload: testPayload})
		want := "POST " + u + ": refused: " + apiAddr.String() + " is the cluster's API server, which hooks never call (no policy setting allows it)"
		if res.Outcome != Error || res.Message != want || res.Attempts != 1 {
			t.Fatalf("Do = %s %q after %d attempts, want %q after 1", res.Outcome, res.Message, res.Attempts, want)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("the API server was called %d times, want never", n)
	}
	if res := c.Do(context.Background(), Call{URL: other.URL, Networks: loopback, Payload: testPayload}); res.Outcome != OK {
		t.Fatalf("Do at another port of the same address = %s %q, want ok", res.Outcome, res.Message)
	}
}

// A private address is refused unless the call's networks (the policy
// file's hookNetworks) cover it. Where one is allowed, the call goes out:
// whether anything answers there depends on where the test runs.
func TestDoRefusesPrivateAddressesOutsideHookNetworks(t *testing.T) {
	dns := newFakeDNS(t)
	dns.answer("10.96.0.12")
	const u = "http://shop.fledge.test:8080/hook"
	tests := []struct {
		name     string
		networks []netip.Prefix
		refused  bool
	}{
		{"without hookNetworks", nil, true},
		{"outside hookNetworks", []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("192.168.0.0/16")}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := New(withResolver(dns.resolver)).Do(context.Background(), Call{URL: u, Networks: tt.networks, Timeout: time.Second, Retries: 2, Payload: testPayload})
			want := "POST " + u + ": refused: 10.96.0.12 is a private address not in the policy file's hookNetworks (add a CIDR that covers it to allow it)"
			if res.Outcome != Error || res.Message != want || res.Attempts != 1 {
				t.Fatalf("Do = %s %q after %d attempts, want %q after 1", res.Outcome, res.Message, res.Attempts, want)
			}
		})
	}
}

// A connection dialed for a call whose policy allowed its address is never
// reused by a call whose policy does not: each set of networks has its own
// pool.
func TestDoKeepsConnectionsOfDifferentPoliciesApart(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	c := New()
	steps := []struct {
		networks []netip.Prefix
		outcome  Outcome
		conns    int32 // opened so far
	}{
		{loopback, OK, 1},
		{nil, Error, 1}, // the idle connection is there, but not for this call
		{[]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, Error, 1},
		{[]netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, OK, 2},
		{[]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, OK, 2}, // the first call's pool again
		{[]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("127.0.0.0/8")}, OK, 2},
	}
	for i, s := range steps {
		res := c.Do(context.Background(), Call{URL: srv.URL, Networks: s.networks, Payload: testPayload})
		if res.Outcome != s.outcome || conns.Load() != s.conns {
			t.Fatalf("call %d with networks %v = %s %q after %d connections, want %s after %d", i, s.networks, res.Outcome, res.Message, conns.Load(), s.outcome, s.conns)
		}
	}
}

func TestAPIServerAddrs(t *testing.T) {
	tests := []struct {
		name   string
		env    map[string]string
		server string
		want   []string
	}{
		{"reads the in-cluster environment and the same server once", map[string]string{"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"},
			"https://10.96.0.1:443", []string{"10.96.0.1:443"}},
		{"reads an IPv6 service address", map[string]string{"KUBERNETES_SERVICE_HOST": "fd00:10:96::1", "KUBERNETES_SERVICE_PORT": "443"}, "", []string{"[fd00:10:96::1]:443"}},
		{"denies every port when the port is unreadable", map[string]string{"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "https"}, "", []string{"10.96.0.1:0"}},
		{"reads a kubeconfig's server", nil, "https://127.0.0.1:6443", []string{"127.0.0.1:6443"}},
		{"takes https's port for a server without one", nil, "https://10.0.0.1", []string{"10.0.0.1:443"}},
		{"takes http's port for an http server without one", nil, "http://10.0.0.1/", []string{"10.0.0.1:80"}},
		{"reads a bare host as client-go does", nil, "10.0.0.1:6443", []string{"10.0.0.1:6443"}},
		{"reads both when they differ", map[string]string{"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"},
			"https://[::ffff:192.168.1.5]:6443", []string{"10.96.0.1:443", "192.168.1.5:6443"}},
		{"leaves names out", map[string]string{"KUBERNETES_SERVICE_HOST": "kubernetes.default.svc", "KUBERNETES_SERVICE_PORT": "443"}, "https://api.example.com:6443", nil},
		{"finds nothing outside a cluster without a server", nil, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, a := range APIServerAddrs(func(k string) string { return tt.env[k] }, tt.server) {
				got = append(got, a.String())
			}
			if strings.Join(got, " ") != strings.Join(tt.want, " ") {
				t.Fatalf("APIServerAddrs = %v, want %v", got, tt.want)
			}
		})
	}
}

// fakeDNS is a DNS server on loopback that answers every A or AAAA
// question with one address, changeable, and a resolver that asks it.
type fakeDNS struct {
	resolver *net.Resolver
	addr     atomic.Pointer[netip.Addr]
}

func newFakeDNS(t *testing.T) *fakeDNS {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen for DNS: %v", err)
	}
	t.Cleanup(func() { pc.Close() })
	d := &fakeDNS{}
	d.answer("127.0.0.1")
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if resp := dnsAnswer(buf[:n], *d.addr.Load()); resp != nil {
				pc.WriteTo(resp, from)
			}
		}
	}()
	d.resolver = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var nd net.Dialer
		return nd.DialContext(ctx, "udp", pc.LocalAddr().String())
	}}
	return d
}

func (d *fakeDNS) answer(ip string) {
	a := netip.MustParseAddr(ip)
	d.addr.Store(&a)
}

// dnsAnswer answers query q: ip if q asks for its family, no record else.
func dnsAnswer(q []byte, ip netip.Addr) []byte {
	i := 12 // past the header
	for i < len(q) && q[i] != 0 {
		i += int(q[i]) + 1 // a label
	}
	i += 5 // the root label, QTYPE, QCLASS
	if len(q) < 12 || i > len(q) {
		return nil
	}
	qtype := binary.BigEndian.Uint16(q[i-4:])
	resp := append([]byte(nil), q[:i]...) // the header and the question
	resp[2], resp[3] = 0x81, 0x80         // a response, recursion available, no error
	clear(resp[6:12])                     // no answers yet, no authority or additional records
	want := uint16(28)                    // AAAA
	if ip.Is4() {
		want = 1 // A
	}
	if qtype == want {
		resp[7] = 1
		rdata := ip.AsSlice()
		resp = append(resp, 0xc0, 12) // the name, pointing at the question's
		resp = binary.BigEndian.AppendUint16(resp, qtype)
		resp = binary.BigEndian.AppendUint16(resp, 1) // IN
		resp = binary.BigEndian.AppendUint32(resp, 0) // TTL
		resp = binary.BigEndian.AppendUint16(resp, uint16(len(rdata)))
		resp = append(resp, rdata...)
	}
	return resp
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
