package hookclient

import (
	"context"
	"encoding/binary"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestCheckAddr(t *testing.T) {
	tests := []struct {
		name           string
		addr           string
		allowLinkLocal bool
		refused        string // part of the refusal, "" for allowed
	}{
		{"allows loopback", "127.0.0.1", false, ""},
		{"allows IPv6 loopback", "::1", false, ""},
		{"allows private ranges, where in-cluster services live", "10.96.0.10", false, ""},
		{"allows the other private ranges", "192.168.1.20", false, ""},
		{"allows public addresses", "93.184.216.34", false, ""},
		{"allows unique-local IPv6 other than AWS metadata", "fd00:ec2::253", false, ""},
		{"refuses the cloud metadata address", "169.254.169.254", false, "link-local/cloud-metadata"},
		{"refuses any IPv4 link-local address", "169.254.170.2", false, "link-local/cloud-metadata"},
		{"refuses IPv6 link-local", "fe80::1", false, "link-local/cloud-metadata"},
		{"refuses IPv6 link-local with a zone", "fe80::1%eth0", false, "link-local/cloud-metadata"},
		{"refuses AWS metadata over IPv6", "fd00:ec2::254", false, "link-local/cloud-metadata"},
		{"refuses Alibaba metadata", "100.100.100.200", false, "link-local/cloud-metadata"},
		{"refuses the metadata address mapped into IPv6", "::ffff:169.254.169.254", false, "link-local/cloud-metadata"},
		{"refuses the metadata address behind NAT64", "64:ff9b::a9fe:a9fe", false, "link-local/cloud-metadata"},
		{"allows link-local when the policy opts in", "169.254.169.254", true, ""},
		{"allows IPv6 link-local when the policy opts in", "fe80::1", true, ""},
		{"allows Alibaba metadata when the policy opts in", "100.100.100.200", true, ""},
		{"refuses the unspecified address", "0.0.0.0", false, "unspecified"},
		{"refuses the unspecified address even when link-local is allowed", "0.0.0.0", true, "unspecified"},
		{"refuses the rest of 0.0.0.0/8, which Linux dials as local", "0.1.2.3", true, "unspecified"},
		{"refuses the IPv6 unspecified address", "::", true, "unspecified"},
		{"refuses multicast", "224.0.0.1", true, "multicast"},
		{"refuses IPv6 multicast", "ff02::1", true, "multicast"},
		{"refuses broadcast", "255.255.255.255", true, "broadcast"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkAddr(netip.MustParseAddr(tt.addr), tt.allowLinkLocal)
			switch {
			case tt.refused == "" && err != nil:
				t.Fatalf("checkAddr(%s) = %v, want allowed", tt.addr, err)
			case tt.refused != "" && (err == nil || !strings.Contains(err.Error(), tt.refused)):
				t.Fatalf("checkAddr(%s) = %v, want refused as %q", tt.addr, err, tt.refused)
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
	call := Call{URL: u, Timeout: 2 * time.Second, Payload: testPayload}

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
