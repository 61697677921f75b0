package mesh

import (
	"fmt"
	"math"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestClientValidation(t *testing.T) {
	valid := Client{Name: "web", Namespace: "demo", Host: "app", RPS: 10}
	with := func(f func(*Client)) Client { c := valid; f(&c); return c }

	tests := []struct {
		name    string
		client  Client
		wantErr string
	}{
		{"a client without a name is refused", with(func(c *Client) { c.Name = "" }), `client "": name: empty`},
		{"a client without a namespace is refused", with(func(c *Client) { c.Namespace = "" }), `client "web": namespace: empty; it is needed to resolve short hosts`},
		{"a host with a path is refused", with(func(c *Client) { c.Host = "app/x" }), `client "web": host: "app/x" is not an authority`},
		{"a relative path is refused", with(func(c *Client) { c.Path = "x" }), `client "web": path: "x" does not start with /`},
		{"an unknown protocol is refused", with(func(c *Client) { c.Protocol = "tcp" }), `client "web": protocol: "tcp" is not "http" or "grpc"`},
		{"a zero rate is refused", with(func(c *Client) { c.RPS = 0 }), `client "web": rps: 0 is not a finite number > 0`},
		{"an infinite rate is refused", with(func(c *Client) { c.RPS = math.Inf(1) }), `client "web": rps: +Inf is not a finite number > 0`},
		{"a negative population is refused", with(func(c *Client) { c.Users = -1 }), `client "web": users: -1 is negative`},
		{"a segment share above 1 is refused", with(func(c *Client) { c.Segments = []Segment{{Share: 0.1}, {Share: 2}} }), `client "web": segments[1].share: 2 is not in [0,1]`},
		{"a segment may not impersonate users", with(func(c *Client) { c.Segments = []Segment{{Share: 1, Headers: map[string]string{"X-User-Id": "u"}}} }), `client "web": segments[0].headers[X-User-Id]: may not be set by a segment`},
		{"a cookie name with a separator is refused", with(func(c *Client) { c.Segments = []Segment{{Share: 1, Cookies: map[string]string{"a;b": "1"}}} }), `client "web": segments[0].cookies[a;b]: is not a cookie name`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.client.normalized()
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("normalized() error = %v, want %q", err, tt.wantErr)
			}
		})
	}

	t.Run("defaults fill in path, method, protocol and users and header names are lower-cased", func(t *testing.T) {
		got, err := with(func(c *Client) {
			c.Segments = []Segment{{Share: 0.5, Headers: map[string]string{"X-User-Tier": "beta"}}}
		}).normalized()
		if err != nil {
			t.Fatal(err)
		}
		want := Client{Name: "web", Namespace: "demo", Host: "app", RPS: 10, Path: "/", Method: "GET", Protocol: HTTP, Users: 100,
			Segments: []Segment{{Share: 0.5, Headers: map[string]string{"x-user-tier": "beta"}}}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("normalized() mismatch (-want +got):\n%s", diff)
		}
	})
}

func TestSegments(t *testing.T) {
	t.Run("a segment holds its share of the users", func(t *testing.T) {
		var in int
		for u := range 20000 {
			if inSegment(fmt.Sprint("user-", u), 0, 0.1) {
				in++
			}
		}
		if diff := cmp.Diff(0.1, float64(in)/20000, cmpopts.EquateApprox(0, 0.01)); diff != "" {
			t.Errorf("share mismatch (-want +got):\n%s", diff)
		}
	})

	t.Run("a user is always in or always out of a segment, whatever the seed", func(t *testing.T) {
		c, err := Client{Name: "web", Namespace: "demo", Host: "app", RPS: 1, Users: 200,
			Segments: []Segment{{Share: 0.3, Headers: map[string]string{"x-user-tier": "beta"}}}}.normalized()
		if err != nil {
			t.Fatal(err)
		}
		tier := map[string]string{}
		for _, seed := range []uint64{1, 2, 3} {
			gen := newGenerator(c, seed)
			for range 2000 {
				req := gen.next()
				if prev, ok := tier[req.User]; ok && prev != req.Headers["x-user-tier"] {
					t.Fatalf("user %s sent tier %q and %q", req.User, prev, req.Headers["x-user-tier"])
				}
				tier[req.User] = req.Headers["x-user-tier"]
				if req.Headers["x-user-id"] != req.User {
					t.Fatalf("x-user-id = %q for user %q", req.Headers["x-user-id"], req.User)
				}
			}
		}
	})

	t.Run("segment cookies and jar cookies travel in one cookie header", func(t *testing.T) {
		c, err := Client{Name: "web", Namespace: "demo", Host: "app", RPS: 1, Users: 1,
			Segments: []Segment{{Share: 1, Cookies: map[string]string{"b": "2"}, Headers: map[string]string{"Cookie": "a=1"}}}}.normalized()
		if err != nil {
			t.Fatal(err)
		}
		gen := newGenerator(c, 1)
		first := gen.next()
		gen.remember(&first, &Response{SetCookies: map[string]string{"b": "3", "c": "4"}})
		want := map[string]string{"x-user-id": "user-0", "cookie": "a=1; b=3; c=4"}
		if diff := cmp.Diff(want, gen.next().Headers); diff != "" {
			t.Errorf("headers mismatch (-want +got):\n%s", diff)
		}
	})
}
