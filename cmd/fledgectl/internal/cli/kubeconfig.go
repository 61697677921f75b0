package cli

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	// The auth-provider plugins client-go still ships: oidc, and the
	// azure and gcp stubs that tell users to move to exec plugins. None
	// pulls a cloud SDK.
	_ "k8s.io/client-go/plugin/pkg/client/auth"
)

// kubeconfig is the parts of the kubeconfig's context fledgectl uses.
type kubeconfig struct {
	namespace string
	// creds is the context's user's token, got as client-go gets it for
	// the API server; nil if the user has none (note says why).
	creds *bearerCredentials
	note  string
}

// loadKubeconfig reads the kubeconfig (--kubeconfig, else $KUBECONFIG,
// else ~/.kube/config) and its context (--context, else the current
// one). A missing default kubeconfig is no error: CI runners often have
// none.
func (a *app) loadKubeconfig() (kubeconfig, error) {
	a.kubeOnce.Do(func() { a.kube, a.kubeErr = a.readKubeconfig() })
	return a.kube, a.kubeErr
}

func (a *app) readKubeconfig() (kubeconfig, error) {
	rules := &clientcmd.ClientConfigLoadingRules{}
	switch {
	case a.flags.kubeconfig != "":
		rules.ExplicitPath = a.flags.kubeconfig
	case a.getenv(clientcmd.RecommendedConfigPathEnvVar) != "":
		rules.Precedence = filepath.SplitList(a.getenv(clientcmd.RecommendedConfigPathEnvVar))
	default:
		if home := a.getenv("HOME"); home != "" {
			rules.Precedence = []string{filepath.Join(home, clientcmd.RecommendedHomeDir, clientcmd.RecommendedFileName)}
		}
	}
	raw, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).RawConfig()
	if err != nil {
		return kubeconfig{}, fmt.Errorf("kubeconfig: %w", err)
	}
	name := raw.CurrentContext
	if a.flags.context != "" {
		name = a.flags.context
	}
	if name == "" {
		return kubeconfig{note: "the kubeconfig has no current context"}, nil
	}
	kctx, ok := raw.Contexts[name]
	if !ok {
		if a.flags.context != "" {
			return kubeconfig{}, fmt.Errorf("kubeconfig: no context %q", name)
		}
		return kubeconfig{note: fmt.Sprintf("the kubeconfig's current context %q does not exist", name)}, nil
	}
	k := kubeconfig{namespace: kctx.Namespace}
	user := raw.AuthInfos[kctx.AuthInfo]
	if user == nil {
		k.note = fmt.Sprintf("context %q has no user", name)
		return k, nil
	}
	source, ok := tokenSource(kctx.AuthInfo, user)
	if !ok {
		k.note = userNote(kctx.AuthInfo, user)
		return k, nil
	}
	// The rest.Config client-go would use for this context: its user's
	// token, token file, exec plugin or auth provider, with the plugin's
	// cluster information and a persister for refreshed tokens (oidc).
	cfg, err := clientcmd.NewNonInteractiveClientConfig(raw, name, &clientcmd.ConfigOverrides{}, rules).ClientConfig()
	if err != nil {
		return kubeconfig{}, fmt.Errorf("kubeconfig: context %q: %w", name, err)
	}
	k.creds, err = kubeToken(cfg, source)
	if err != nil {
		return kubeconfig{}, fmt.Errorf("kubeconfig: %s: %w", source, err)
	}
	return k, nil
}

// tokenSource says where a kubeconfig user's bearer token comes from, if
// it can have one.
func tokenSource(name string, u *clientcmdapi.AuthInfo) (string, bool) {
	what := ""
	switch {
	case u.Token != "":
		what = "token"
	case u.TokenFile != "":
		what = "token file " + u.TokenFile
	case u.Exec != nil:
		what = fmt.Sprintf("exec plugin %s", u.Exec.Command)
	case u.AuthProvider != nil:
		what = fmt.Sprintf("auth provider %s", u.AuthProvider.Name)
	default:
		return "", false
	}
	return fmt.Sprintf("kubeconfig user %q (%s)", name, what), true
}

func userNote(name string, u *clientcmdapi.AuthInfo) string {
	switch {
	case u.ClientCertificate != "" || len(u.ClientCertificateData) > 0:
		return fmt.Sprintf("kubeconfig user %q has a client certificate for the API server, not for fledge: pass --token, or --cert-file and --key-file", name)
	case u.Username != "":
		return fmt.Sprintf("kubeconfig user %q has a username and password, which fledge does not take: pass --token", name)
	}
	return fmt.Sprintf("kubeconfig user %q has no token", name)
}

// kubeToken gets cfg's bearer token exactly as client-go would for a
// request to the API server: its authentication round trippers (bearer
// token, token file re-read as it rotates, exec plugin run again when
// its credential expires, auth provider refreshed) wrap one that sends
// nothing and keeps the Authorization header they set. fledge checks the
// token with a TokenReview, so a token the API server takes, fledge
// takes.
func kubeToken(cfg *rest.Config, source string) (*bearerCredentials, error) {
	rt, err := rest.HTTPWrappersForConfig(cfg, captureAuthorization{})
	if err != nil {
		return nil, err
	}
	return &bearerCredentials{source: source, get: func(ctx context.Context) (string, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://fledge.invalid/", nil)
		if err != nil {
			return "", err
		}
		resp, err := rt.RoundTrip(req)
		if err != nil {
			return "", err
		}
		resp.Body.Close()
		scheme, token, _ := strings.Cut(resp.Request.Header.Get("Authorization"), " ")
		if !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
			// An exec plugin may answer with a client certificate only.
			return "", errors.New("it gives no bearer token (a client certificate for the API server, perhaps), and fledge takes tokens")
		}
		return strings.TrimSpace(token), nil
	}}, nil
}

// captureAuthorization is the innermost round tripper of kubeToken: it
// sends nothing and answers 200 with the request as it reached it.
type captureAuthorization struct{}

func (captureAuthorization) RoundTrip(req *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: http.StatusOK, Status: "200 OK", Header: http.Header{}, Body: http.NoBody, Request: req}, nil
}

// bearerCredentials sends the caller's bearer token with every call, over
// TLS only. It gets the token for each call, so that a token that expires
// during a long watch is renewed by its plugin. source says where the
// token comes from, for messages: the token itself is never printed.
type bearerCredentials struct {
	source string
	get    func(context.Context) (string, error)

	mu      sync.Mutex
	lastErr error
}

func staticToken(source, token string) *bearerCredentials {
	return &bearerCredentials{source: source, get: func(context.Context) (string, error) { return token, nil }}
}

// check gets the token once, so that a plugin that fails is reported as
// such before anything is sent.
func (b *bearerCredentials) check() error {
	if _, err := b.token(context.Background()); err != nil {
		return fmt.Errorf("token from %s: %w", b.source, err)
	}
	return nil
}

func (b *bearerCredentials) token(ctx context.Context) (string, error) {
	t, err := b.get(ctx)
	b.mu.Lock()
	b.lastErr = err
	b.mu.Unlock()
	return t, err
}

// failed is why the token could not be got last time, if it could not.
func (b *bearerCredentials) failed() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.lastErr
}

func (b *bearerCredentials) GetRequestMetadata(ctx context.Context, _ ...string) (map[string]string, error) {
	t, err := b.token(ctx)
	if err != nil {
		return nil, status.Errorf(codes.Unauthenticated, "token from %s: %v", b.source, err)
	}
	return map[string]string{"authorization": "Bearer " + t}, nil
}

func (*bearerCredentials) RequireTransportSecurity() bool { return true }
