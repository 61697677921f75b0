package loadtest

import "testing"

func TestAllowlist(t *testing.T) {
	a, err := ParseAllowlist([]string{"*.svc.cluster.local, shop.demo", "10.0.0.7", "::1", " Cart.Example.COM. "})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		host string
		want bool
	}{
		{"a host under a wildcard suffix", "shop.demo.svc.cluster.local", true},
		{"a host deeper under the suffix", "a.b.svc.cluster.local", true},
		{"the suffix itself", "svc.cluster.local", false},
		{"a host that only ends like the suffix", "evilsvc.cluster.local", false},
		{"an exact host", "shop.demo", true},
		{"a host under an exact host", "x.shop.demo", false},
		{"an exact IP", "10.0.0.7", true},
		{"an IPv6 address", "::1", true},
		{"another IP", "10.0.0.8", false},
		{"host names compare without case or a final dot", "CART.example.com.", true},
		{"an empty host", "", false},
		{"a cloud metadata address", "169.254.169.254", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := a.Allows(tt.host); got != tt.want {
				t.Errorf("Allows(%q) = %t, want %t", tt.host, got, tt.want)
			}
		})
	}
}

func TestParseAllowlistRefusesPatternsItCannotHonour(t *testing.T) {
	tests := []struct {
		name    string
		pattern string
		wantErr string
	}{
		{"everything", "*", `allow pattern "*": allows every host; name a suffix such as *.svc.cluster.local`},
		{"a wildcard without a dot", "*svc.cluster.local", `allow pattern "*svc.cluster.local": a wildcard must be "*." and a suffix`},
		{"a wildcard in the middle", "*.*.local", `allow pattern "*.*.local": only a leading *. is supported`},
		{"a port", "shop.demo:8080", `allow pattern "shop.demo:8080": a host only: no scheme, port, path or credentials`},
		{"a URL", "http://shop.demo", `allow pattern "http://shop.demo": a host only: no scheme, port, path or credentials`},
		{"nothing", " , ", "allowlist: no host pattern; name the hosts load may go to, e.g. *.svc.cluster.local"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseAllowlist([]string{tt.pattern}); errString(err) != tt.wantErr {
				t.Errorf("error = %q, want %q", errString(err), tt.wantErr)
			}
		})
	}
}
