package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
)

// What went wrong between fledgectl and fledge, said in one plain line
// with what to check, and an exit code that tells a script whether
// retrying may help (ExitUnavailable, ExitTimeout) or not (ExitError:
// fledge's certificate, the token or the permission must change first).

// plainError is a failed call said plainly. It still wraps the call's
// error, so that its gRPC code decides what is retried.
type plainError struct {
	msg string
	err error
}

func (e *plainError) Error() string { return e.msg }
func (e *plainError) Unwrap() error { return e.err }

func plainf(err error, format string, args ...any) error {
	return &plainError{msg: fmt.Sprintf(format, args...), err: err}
}

// handshakes remembers how the last TLS handshake with fledge ended. grpc
// reports a failed handshake as UNAVAILABLE with its cause flattened into
// a string; only the handshake itself can tell a certificate fledgectl
// will never accept (retrying cannot help) from a connection that broke.
type handshakes struct {
	mu   sync.Mutex
	last error
}

func (h *handshakes) record(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.last = err
}

func (h *handshakes) failure() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.last
}

// recordingTLS is TLS transport credentials that record each client
// handshake's outcome.
type recordingTLS struct {
	credentials.TransportCredentials
	h *handshakes
}

func (c recordingTLS) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := c.TransportCredentials.ClientHandshake(ctx, authority, raw)
	c.h.record(err)
	return conn, info, err
}

// Clone keeps the recording: grpc clones credentials per connection.
func (c recordingTLS) Clone() credentials.TransportCredentials {
	return recordingTLS{TransportCredentials: c.TransportCredentials.Clone(), h: c.h}
}

// target is fledge's address as the user gave it.
func (a *app) target() string {
	if a.set != nil {
		return a.set.server
	}
	return firstOf(a.flags.server, a.getenv(EnvServer))
}

// tlsRefusal is the failed call err said plainly, if the last handshake
// failed in a way that no retry can mend (nil otherwise): fledge's
// certificate is not for the name dialled, not signed by a trusted CA, or
// no longer valid, or what answers does not speak TLS.
func (a *app) tlsRefusal(err error) error {
	if status.Code(err) != codes.Unavailable {
		return nil
	}
	herr := a.handshakes.failure()
	if herr == nil {
		return nil
	}
	server := a.target()
	var (
		host    x509.HostnameError
		unknown x509.UnknownAuthorityError
		invalid x509.CertificateInvalidError
		verify  *tls.CertificateVerificationError
		record  tls.RecordHeaderError
	)
	switch {
	case errors.As(herr, &host):
		return plainf(err, "TLS: fledge's certificate at %s is for another name (it names %s, not %s): put a name it holds in --server, or pass it as --tls-server-name", server, certNames(host.Certificate), host.Host)
	case errors.As(herr, &unknown):
		hint := "pass the CA that signed it with --ca-file"
		if a.flags.caFile != "" {
			hint = fmt.Sprintf("check that --ca-file %s holds the CA that signed it", a.flags.caFile)
		}
		issuer := "unknown issuer"
		if unknown.Cert != nil {
			issuer = fmt.Sprintf("issuer %q", unknown.Cert.Issuer.CommonName)
		}
		return plainf(err, "TLS: fledge's certificate at %s is not signed by a CA fledgectl trusts (%s): %s", server, issuer, hint)
	case errors.As(herr, &invalid):
		return plainf(err, "TLS: fledge's certificate at %s is not valid (%s): have it renewed, or check this machine's clock", server, x509Text(invalid))
	case errors.As(herr, &verify):
		return plainf(err, "TLS: fledge's certificate at %s failed verification (%v): check --ca-file and the certificate", server, verify.Err)
	case errors.As(herr, &record):
		return plainf(err, "TLS: what answers at %s does not speak TLS: check that --server names fledge's API port", server)
	}
	return nil
}

// certNames are the names a certificate is for.
func certNames(c *x509.Certificate) string {
	if c == nil {
		return "no name"
	}
	names := slices.Clone(c.DNSNames)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 {
		return fmt.Sprintf("only the common name %q, which TLS ignores", c.Subject.CommonName)
	}
	return strings.Join(names, ", ")
}

// x509Text is an x509 error without its package prefix.
func x509Text(err error) string { return strings.TrimPrefix(err.Error(), "x509: ") }

// explain says a failed call plainly, with an exit code, when it failed
// for one of the reasons people meet first: fledge unreachable or
// unavailable, its certificate, the token, the permission, the time.
// Other errors are returned as they are.
func (a *app) explain(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := errors.AsType[*exitError](err); ok {
		return err // said already
	}
	if _, ok := errors.AsType[*plainError](err); ok {
		return err
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	server := a.target()
	msg := st.Message()
	switch st.Code() {
	case codes.Unavailable:
		if refusal := a.tlsRefusal(err); refusal != nil {
			return exitWith(ExitError, refusal)
		}
		if cause, ok := connectionCause(msg, server); ok {
			return exitWith(ExitUnavailable, plainf(err, "cannot reach fledge at %s (%s): check --server (or $%s) and that fledge's API is up and reachable from here", server, cause, EnvServer))
		}
		if leader, ok := notLeader(err); ok {
			return exitWith(ExitUnavailable, plainf(err, "fledge at %s is not the leader (the leader is %q) and stayed so while fledgectl retried: check that --server reaches the leader", server, leader))
		}
		return exitWith(ExitUnavailable, plainf(err, "fledge at %s is unavailable (%s): retry later; if it lasts, look at fledge's log", server, msg))
	case codes.DeadlineExceeded:
		return exitWith(ExitTimeout, plainf(err, "no answer from fledge at %s in time (%s): check that it is reachable, or pass a longer --timeout", server, msg))
	case codes.Unauthenticated:
		return exitWith(ExitError, plainf(err, "%s", a.tokenRefused(server, msg)))
	case codes.PermissionDenied:
		return exitWith(ExitError, plainf(err, "fledge at %s refused the call (%s): the caller needs that permission on the Deployment (Kubernetes RBAC)", server, msg))
	}
	return err
}

// tokenRefused says why fledge did not authenticate the caller, naming
// where the token came from (never the token).
func (a *app) tokenRefused(server, msg string) string {
	s := a.set
	switch {
	case s != nil && s.creds != nil && s.creds.failed() != nil:
		return fmt.Sprintf("getting the token from %s failed (%v): check the plugin or file it comes from", s.creds.source, s.creds.failed())
	case s != nil && s.creds != nil:
		return fmt.Sprintf("fledge at %s refused the token from %s (%s): check that it is a valid, unexpired token of fledge's cluster (fledge asks its API server)", server, s.creds.source, msg)
	case s != nil && s.note != "":
		return fmt.Sprintf("fledge at %s wants a token and none was sent (%s; %s): pass --token or --token-file, or set $%s", server, msg, s.note, EnvToken)
	}
	return fmt.Sprintf("fledge at %s wants a token and none was sent (%s): pass --token or --token-file, or set $%s", server, msg, EnvToken)
}

// connectionCause reads, from grpc's message of a call that got no
// connection, its innermost cause ("connection refused"). ok is false
// for an UNAVAILABLE that fledge itself answered.
func connectionCause(msg, server string) (string, bool) {
	switch {
	case strings.HasPrefix(msg, "name resolver error"), strings.Contains(msg, "produced zero addresses"):
		// grpc's resolver does not say why: ask again.
		return resolveCause(server), true
	case strings.HasPrefix(msg, "connection error"), strings.HasPrefix(msg, "last connection error"),
		strings.Contains(msg, "while dialing"), strings.Contains(msg, "connection closed before server preface"):
	default:
		return "", false
	}
	if _, inner, ok := strings.Cut(msg, `desc = "`); ok {
		msg = strings.TrimSuffix(inner, `"`)
	}
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		msg = msg[i+2:]
	}
	return msg, true
}

// resolveCause says why server's host does not resolve.
func resolveCause(server string) string {
	host, _, err := net.SplitHostPort(server)
	if err != nil {
		host = server
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = net.DefaultResolver.LookupHost(ctx, host)
	var dns *net.DNSError
	switch {
	case errors.As(err, &dns):
		return fmt.Sprintf("its name does not resolve: %s", dns.Err)
	case err != nil:
		return fmt.Sprintf("its name does not resolve: %v", err)
	}
	return "its name resolved to no address"
}
