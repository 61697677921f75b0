package hookclient

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// maxRedirects is how many redirects a call follows.
const maxRedirects = 3

// redirectError is a redirect the client would not follow. Like a refused
// address it is not retried: the server would answer the same.
type redirectError struct{ msg string }

func (e *redirectError) Error() string { return e.msg }

// checkRedirect lets a hook move within its own host and nowhere else. A
// policy names one endpoint; a redirect elsewhere (another host, another
// port, https to http) would send the signed payload to a place nobody
// reviewed.
//
// It also refuses the redirects that turn the POST into a GET (301, 302 and
// 303 do): the receiver would get no payload, and a 2xx from, say, a login
// page on the same host would pass a gate.
func checkRedirect(req *http.Request, via []*http.Request) error {
	first := via[0]
	status := 0
	if req.Response != nil {
		status = req.Response.StatusCode
	}
	switch {
	case len(via) > maxRedirects:
		return &redirectError{fmt.Sprintf("stopped after %d redirects", maxRedirects)}
	case origin(req.URL) != origin(first.URL) || (first.URL.Scheme == "https" && req.URL.Scheme != "https"):
		return &redirectError{fmt.Sprintf("%d redirect to %s refused: only redirects within %s are followed",
			status, displayURL(req.URL), origin(first.URL))}
	case req.Method != first.Method:
		return &redirectError{fmt.Sprintf("%d redirect to %s not followed: it would resend the hook as a %s without its payload (only 307 and 308 keep it)",
			status, displayURL(req.URL), req.Method)}
	}
	return nil
}

// origin is a URL's host:port, the port filled in from the scheme.
func origin(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	return net.JoinHostPort(strings.ToLower(u.Hostname()), port)
}

// displayURL is a URL as messages show it: without user info or query,
// which is where credentials and tokens end up in hook URLs. Messages land
// in the Flight's status, readable by more people than the policy.
func displayURL(u *url.URL) string {
	v := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, RawPath: u.RawPath}
	s := v.String()
	if u.RawQuery != "" {
		s += "?..."
	}
	return s
}
