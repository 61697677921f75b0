package mesh

import (
	"cmp"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
)

// Client is a synthetic source of traffic: a workload in the mesh whose
// users call one host.
type Client struct {
	// Name is the source workload (source_workload label) and the key of
	// ClientCounts. Namespace is its namespace; it also resolves short
	// hosts the way DNS search paths do: "app" is
	// app.<Namespace>.svc.cluster.local, "app.other" is
	// app.other.svc.cluster.local.
	Name, Namespace string
	// Labels are the source pod's labels, for sourceLabels matches and the
	// source_app, source_version and canonical labels.
	Labels   map[string]string
	Host     string
	Path     string // default "/"
	Method   string // default "GET"
	Protocol Protocol
	RPS      float64 // requests per second, > 0
	// Users is the size of the user population "user-0".."user-<Users-1>";
	// each request comes from one of them, drawn at random, and carries its
	// id in the x-user-id header. Zero means 100.
	Users    int
	Segments []Segment
}

// Segment is a share of the users (not of the requests) who send extra
// headers or cookies, e.g. {Share: 0.1, Headers: {"x-user-tier": "beta"}}.
// Membership is a hash of the user id and the segment's index, so a user is
// always in or always out, whatever the seed, and segments overlap
// independently.
type Segment struct {
	Share   float64
	Headers map[string]string
	Cookies map[string]string
}

const (
	defaultUsers  = 100
	userIDHeader  = "x-user-id"
	cookieHeader  = "cookie"
	defaultPath   = "/"
	defaultMethod = "GET"
)

// normalized returns c with defaults filled in and header names lower-cased,
// or an error naming the first invalid field.
func (c Client) normalized() (Client, error) {
	fail := func(field, format string, args ...any) (Client, error) {
		return Client{}, fmt.Errorf("client %q: %s: %s", c.Name, field, fmt.Sprintf(format, args...))
	}
	if c.Name == "" {
		return fail("name", "empty")
	}
	if c.Namespace == "" {
		return fail("namespace", "empty; it is needed to resolve short hosts")
	}
	if c.Host == "" || strings.ContainsAny(c.Host, "/ \t") {
		return fail("host", "%q is not an authority", c.Host)
	}
	c.Path = cmp.Or(c.Path, defaultPath)
	if !strings.HasPrefix(c.Path, "/") {
		return fail("path", "%q does not start with /", c.Path)
	}
	c.Method = cmp.Or(c.Method, defaultMethod)
	switch c.Protocol {
	case "":
		c.Protocol = HTTP
	case HTTP, GRPC:
	default:
		return fail("protocol", "%q is not %q or %q", c.Protocol, HTTP, GRPC)
	}
	if math.IsNaN(c.RPS) || math.IsInf(c.RPS, 0) || c.RPS <= 0 {
		return fail("rps", "%v is not a finite number > 0", c.RPS)
	}
	switch {
	case c.Users < 0:
		return fail("users", "%d is negative", c.Users)
	case c.Users == 0:
		c.Users = defaultUsers
	}
	segments := make([]Segment, len(c.Segments))
	for i, s := range c.Segments {
		if math.IsNaN(s.Share) || s.Share < 0 || s.Share > 1 {
			return fail(fmt.Sprintf("segments[%d].share", i), "%v is not in [0,1]", s.Share)
		}
		headers := make(map[string]string, len(s.Headers))
		for name, v := range s.Headers {
			lower := strings.ToLower(name)
			if lower == "" || lower == userIDHeader {
				return fail(fmt.Sprintf("segments[%d].headers[%s]", i, name), "may not be set by a segment")
			}
			headers[lower] = v
		}
		for name := range s.Cookies {
			if name == "" || strings.ContainsAny(name, "=; ") {
				return fail(fmt.Sprintf("segments[%d].cookies[%s]", i, name), "is not a cookie name")
			}
		}
		segments[i] = Segment{Share: s.Share, Headers: headers, Cookies: s.Cookies}
	}
	c.Segments = segments
	return c, nil
}

// generator produces a client's requests and keeps its users' cookie jars.
// It is used by one goroutine at a time.
type generator struct {
	c   Client // normalized
	src sourceLabels
	rng *rand.Rand
	// jar holds, per user, the cookies routes have set, so that a user who
	// was once sent to a canary with a cookie keeps sending it.
	jar map[string]map[string]string
}

func newGenerator(c Client, seed uint64) *generator {
	return &generator{
		c:   c,
		src: peerSourceLabels(newPeerLabels(c.Name, c.Namespace, "", c.Labels)),
		rng: rand.New(rand.NewPCG(seed, hashString(c.Name))),
		jar: map[string]map[string]string{},
	}
}

// next builds the next request: a random user, the headers and cookies of
// the segments the user belongs to, and the cookies in the user's jar.
func (g *generator) next() Request {
	user := "user-" + strconv.Itoa(g.rng.IntN(g.c.Users))
	headers := map[string]string{userIDHeader: user}
	var cookies map[string]string
	addCookies := func(m map[string]string) {
		if len(m) == 0 {
			return
		}
		if cookies == nil {
			cookies = map[string]string{}
		}
		maps.Copy(cookies, m)
	}
	for i := range g.c.Segments {
		s := &g.c.Segments[i]
		if !inSegment(user, i, s.Share) {
			continue
		}
		for name, v := range s.Headers {
			if name == cookieHeader {
				if cookies == nil {
					cookies = map[string]string{}
				}
				parseCookieHeader(v, cookies)
				continue
			}
			headers[name] = v
		}
		addCookies(s.Cookies)
	}
	// Cookies a route set win over the segment's: the server's Set-Cookie
	// replaces a browser's value of the same name.
	addCookies(g.jar[user])
	if len(cookies) > 0 {
		headers[cookieHeader] = formatCookieHeader(cookies)
	}
	return Request{
		Client:          g.c.Name,
		SourceNamespace: g.c.Namespace,
		SourceLabels:    g.c.Labels,
		Host:            g.c.Host,
		Path:            g.c.Path,
		Method:          g.c.Method,
		Protocol:        g.c.Protocol,
		User:            user,
		Headers:         headers,
	}
}

// remember stores the cookies a response set in the user's jar.
func (g *generator) remember(req *Request, resp *Response) {
	if len(resp.SetCookies) == 0 {
		return
	}
	jar := g.jar[req.User]
	if jar == nil {
		jar = map[string]string{}
		g.jar[req.User] = jar
	}
	maps.Copy(jar, resp.SetCookies)
}

// inSegment decides membership from the user id and segment index alone.
func inSegment(user string, index int, share float64) bool {
	h := hashString(user) ^ mix64(uint64(index)+1)
	return float64(mix64(h)>>11)/(1<<53) < share
}

// hashString is FNV-1a followed by a mixer, so that ids that differ in one
// character ("user-1", "user-2") land far apart.
func hashString(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return mix64(h)
}

// mix64 is the splitmix64 finalizer.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
