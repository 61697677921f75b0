package api

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"

	"github.com/fledgehq/fledge/rollout/rolloutpb"
)

// The verbs the access table asks for, on deployments.apps.
const (
	VerbGet   = "get"
	VerbList  = "list"
	VerbPatch = "patch"
)

// Access is what one call needs: a verb on one Deployment, or, with Name
// empty, on the Deployments of a namespace.
type Access struct {
	Verb      string
	Namespace string
	Name      string
	// AnyCaller: any authenticated caller may, with no review (Version,
	// which names nothing and says only which build answers).
	AnyCaller bool
}

func (a Access) String() string {
	if a.Name == "" {
		return fmt.Sprintf("%s deployments.apps in namespace %q", a.Verb, a.Namespace)
	}
	return fmt.Sprintf("%s deployments.apps %q in namespace %q", a.Verb, a.Name, a.Namespace)
}

// A rule reads the Access a method needs from its request message.
type rule func(req any) (Access, error)

// rolloutsAccess is the access table of fledge.v1.Rollouts. It lists every
// method of the service (a test holds it to the service descriptor): a
// method missing here is refused, so that a method added to the proto is
// closed until someone decides what it needs.
//
// Reading one Flight needs `get` on its Deployment, and reading a namespace
// (List, Watch without a name) `list` on its Deployments: the Flight is
// fledge's record of the Deployment, and `get` and `list` on it are what
// kubectl would need to see the same. Watch needs no `watch`: roles that
// grant `get` or `list` on deployments nearly always grant `watch` too,
// and asking for it would only make pipeline roles longer. Every mutating
// call, SetImage included, needs `patch` on the Deployment: what
// `kubectl set image` or an annotation-driven action would need.
var rolloutsAccess = map[string]rule{
	rolloutpb.Rollouts_List_FullMethodName:     namespaceRule(VerbList),
	rolloutpb.Rollouts_Get_FullMethodName:      deploymentRule(VerbGet),
	rolloutpb.Rollouts_Watch_FullMethodName:    watchRule,
	rolloutpb.Rollouts_Explain_FullMethodName:  deploymentRule(VerbGet),
	rolloutpb.Rollouts_Promote_FullMethodName:  deploymentRule(VerbPatch),
	rolloutpb.Rollouts_Abort_FullMethodName:    deploymentRule(VerbPatch),
	rolloutpb.Rollouts_Pause_FullMethodName:    deploymentRule(VerbPatch),
	rolloutpb.Rollouts_Resume_FullMethodName:   deploymentRule(VerbPatch),
	rolloutpb.Rollouts_Retry_FullMethodName:    deploymentRule(VerbPatch),
	rolloutpb.Rollouts_SetImage_FullMethodName: deploymentRule(VerbPatch),
	rolloutpb.Rollouts_Version_FullMethodName:  anyCaller,
}

type namespaced interface{ GetNamespace() string }

type named interface {
	namespaced
	GetName() string
}

// deploymentRule needs verb on the Deployment the request names.
func deploymentRule(verb string) rule {
	return func(req any) (Access, error) {
		r, ok := req.(named)
		if !ok {
			return Access{}, fmt.Errorf("request %T names no deployment", req)
		}
		return Access{Verb: verb, Namespace: r.GetNamespace(), Name: r.GetName()}, nil
	}
}

// anyCaller lets every authenticated caller in: the request names no
// Deployment to ask about.
func anyCaller(any) (Access, error) { return Access{AnyCaller: true}, nil }

// namespaceRule needs verb on the Deployments of the request's namespace.
func namespaceRule(verb string) rule {
	return func(req any) (Access, error) {
		r, ok := req.(namespaced)
		if !ok {
			return Access{}, fmt.Errorf("request %T names no namespace", req)
		}
		return Access{Verb: verb, Namespace: r.GetNamespace()}, nil
	}
}

// watchRule: watching one Flight is reading it; watching a namespace is
// listing it.
func watchRule(req any) (Access, error) {
	r, ok := req.(*rolloutpb.WatchRequest)
	if !ok {
		return Access{}, fmt.Errorf("request %T is not a WatchRequest", req)
	}
	if r.GetName() == "" {
		return Access{Verb: VerbList, Namespace: r.GetNamespace()}, nil
	}
	return Access{Verb: VerbGet, Namespace: r.GetNamespace(), Name: r.GetName()}, nil
}

// validate refuses what the API server would not take as a namespace or a
// name, so that a SubjectAccessReview is always about one real namespace
// (never "" for all namespaces) and a well-formed name.
func (a Access) validate() error {
	if a.Namespace == "" {
		return errors.New("namespace is required")
	}
	if errs := validation.IsDNS1123Label(a.Namespace); len(errs) > 0 {
		return fmt.Errorf("namespace %q: %s", a.Namespace, strings.Join(errs, "; "))
	}
	switch a.Verb {
	case VerbList:
		return nil
	case VerbGet, VerbPatch:
		if a.Name == "" {
			return errors.New("name is required")
		}
		if errs := validation.IsDNS1123Subdomain(a.Name); len(errs) > 0 {
			return fmt.Errorf("name %q: %s", a.Name, strings.Join(errs, "; "))
		}
		return nil
	}
	return fmt.Errorf("unknown verb %q", a.Verb)
}

// Config configures an Authorizer.
type Config struct {
	// Kube asks the API server for TokenReviews and SubjectAccessReviews.
	// fledge's ServiceAccount needs `create` on both (system:auth-delegator).
	Kube kubernetes.Interface
	// Audiences, if set, are the audiences a token must be for: a pipeline
	// then uses a token requested for fledge (a projected ServiceAccount
	// token with that audience), which the API server itself would refuse.
	// Empty: the API server's own audiences.
	Audiences []string
	// CacheTTL is how long a successful TokenReview is trusted: a revoked
	// token works for at most that long. Default 30s; negative: no cache.
	// Refusals are never cached. SubjectAccessReviews are not cached, so
	// that a revoked permission stops the next call.
	CacheTTL time.Duration
	// CacheSize bounds the number of cached tokens. Default 1024.
	CacheSize int
	// Timeout bounds each review. Default 10s.
	Timeout time.Duration
	// ClientCertificates lets a client certificate stand for its caller
	// when the call has no bearer token: user CN, groups O plus
	// system:authenticated, as the API server's x509 authentication does.
	// Only certificates that the server's TLS configuration verified count
	// (tls.Config.ClientAuth VerifyClientCertIfGiven or stricter, with
	// ClientCAs): give it a CA that issues client certificates for fledge
	// only, since whoever holds one is whoever its subject says.
	ClientCertificates bool
	// Public are full method names anyone may call without credentials,
	// such as "/grpc.health.v1.Health/Check". Every other method must be
	// in the access table.
	Public []string
	// Clock defaults to the real clock.
	Clock clock.PassiveClock
	// Logger defaults to slog.Default(). Tokens are never logged.
	Logger *slog.Logger
}

// Authorizer authenticates and authorizes the calls of fledge's gRPC
// server. Install both interceptors:
//
//	grpc.NewServer(grpc.ChainUnaryInterceptor(a.Unary), grpc.ChainStreamInterceptor(a.Stream))
//
// Each call goes: the method must be public or in the access table
// (codes.PermissionDenied otherwise); the caller is authenticated
// (codes.Unauthenticated); the request must name a valid namespace and
// name (codes.InvalidArgument); the caller must be allowed the method's
// verb on the Deployment (codes.PermissionDenied, naming verb, resource,
// namespace and name). When the API server cannot be asked:
// codes.Unavailable. Only then does the handler run, with the caller in
// its context (Caller).
type Authorizer struct {
	kube       kubernetes.Interface
	audiences  []string
	timeout    time.Duration
	certs      bool
	public     map[string]bool
	rules      map[string]rule
	clock      clock.PassiveClock
	log        *slog.Logger
	tokenCache *tokenCache
}

// NewAuthorizer returns an Authorizer for fledge.v1.Rollouts.
func NewAuthorizer(cfg Config) (*Authorizer, error) {
	if cfg.Kube == nil {
		return nil, errors.New("authorizer: no Kubernetes client")
	}
	a := &Authorizer{
		kube:      cfg.Kube,
		audiences: slices.Clone(cfg.Audiences),
		timeout:   cfg.Timeout,
		certs:     cfg.ClientCertificates,
		public:    map[string]bool{},
		rules:     rolloutsAccess,
		clock:     cfg.Clock,
		log:       cfg.Logger,
	}
	for _, m := range cfg.Public {
		if _, ok := a.rules[m]; ok {
			return nil, fmt.Errorf("authorizer: %s cannot be public: it needs access to a deployment", m)
		}
		a.public[m] = true
	}
	if a.timeout <= 0 {
		a.timeout = 10 * time.Second
	}
	if a.clock == nil {
		a.clock = clock.RealClock{}
	}
	if a.log == nil {
		a.log = slog.Default()
	}
	ttl, size := cfg.CacheTTL, cfg.CacheSize
	if ttl == 0 {
		ttl = 30 * time.Second
	}
	if size <= 0 {
		size = 1024
	}
	if ttl > 0 {
		a.tokenCache = &tokenCache{ttl: ttl, size: size, entries: map[[sha256.Size]byte]cached{}}
	}
	return a, nil
}

// Unary is the unary server interceptor.
func (a *Authorizer) Unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if a.public[info.FullMethod] {
		return handler(ctx, req)
	}
	r, err := a.rule(info.FullMethod)
	if err != nil {
		return nil, err
	}
	id, err := a.authenticate(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	if err := a.authorize(ctx, info.FullMethod, id, r, req); err != nil {
		return nil, err
	}
	return handler(withCaller(ctx, id), req)
}

// Stream is the stream server interceptor. The caller is authenticated
// before the handler runs; the request, which names the Deployment, only
// arrives with the stream's first message, so the stream given to the
// handler authorizes on its first RecvMsg and refuses to send anything
// before. The generated handler of a server-streaming method receives the
// request before it calls the service, so a refusal ends the call with
// its status and the service never runs.
func (a *Authorizer) Stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if a.public[info.FullMethod] {
		return handler(srv, ss)
	}
	r, err := a.rule(info.FullMethod)
	if err != nil {
		return err
	}
	if info.IsClientStream {
		// Authorizing each message of a client stream is not needed yet.
		return status.Errorf(codes.Unimplemented, "%s: client streams are not authorized, so not served", info.FullMethod)
	}
	id, err := a.authenticate(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	return handler(srv, &authorizingStream{
		ServerStream: ss,
		ctx:          withCaller(ss.Context(), id),
		authorize: func(req any) error {
			return a.authorize(ss.Context(), info.FullMethod, id, r, req)
		},
	})
}

func (a *Authorizer) rule(method string) (rule, error) {
	r, ok := a.rules[method]
	if !ok {
		a.log.Warn("grpc call refused: method not in the access table", "method", method)
		return nil, status.Errorf(codes.PermissionDenied, "%s is not in fledge's access table: refused", method)
	}
	return r, nil
}

// authorizingStream authorizes the request on the first RecvMsg. Nothing
// may be sent before: a handler that does not read its request first is
// refused rather than served unchecked.
type authorizingStream struct {
	grpc.ServerStream
	ctx        context.Context
	authorize  func(req any) error
	received   bool // RecvMsg is called by one goroutine at a time
	authorized atomic.Bool
}

func (s *authorizingStream) Context() context.Context { return s.ctx }

func (s *authorizingStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if s.received {
		return nil
	}
	s.received = true
	if err := s.authorize(m); err != nil {
		return err
	}
	s.authorized.Store(true)
	return nil
}

var errUnauthorizedSend = status.Error(codes.PermissionDenied, "the request was not authorized yet: nothing is sent before it is")

func (s *authorizingStream) SendMsg(m any) error {
	if !s.authorized.Load() {
		return errUnauthorizedSend
	}
	return s.ServerStream.SendMsg(m)
}

func (s *authorizingStream) SendHeader(md metadata.MD) error {
	if !s.authorized.Load() {
		return errUnauthorizedSend
	}
	return s.ServerStream.SendHeader(md)
}

// identity is an authenticated caller.
type identity struct {
	user   string
	uid    string
	groups []string
	extra  map[string]authzv1.ExtraValue
	via    string // "token" or "certificate", for logs
}

type callerKey struct{}

func withCaller(ctx context.Context, id identity) context.Context {
	return context.WithValue(ctx, callerKey{}, id)
}

// Caller returns the Kubernetes user name of the authenticated caller
// ("system:serviceaccount:ci:deployer", say), for the service to record
// who took an action. ok is false outside an authenticated call (a public
// method, or a context that did not come through the Authorizer).
func Caller(ctx context.Context) (user string, ok bool) {
	id, ok := ctx.Value(callerKey{}).(identity)
	return id.user, ok
}

// authenticate finds out who calls: the bearer token if there is one,
// else a verified client certificate if those are trusted.
func (a *Authorizer) authenticate(ctx context.Context, method string) (identity, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	switch values := md.Get("authorization"); len(values) {
	case 0:
		if a.certs {
			if id, ok := certificateIdentity(ctx); ok {
				return id, nil
			}
		}
		return identity{}, status.Error(codes.Unauthenticated, "no credentials: want metadata authorization: Bearer <token>")
	case 1:
		scheme, token, _ := strings.Cut(strings.TrimSpace(values[0]), " ")
		token = strings.TrimSpace(token)
		if !strings.EqualFold(scheme, "Bearer") || token == "" || strings.ContainsAny(token, " \t") {
			return identity{}, status.Error(codes.Unauthenticated, "malformed authorization metadata: want Bearer <token>")
		}
		return a.reviewToken(ctx, method, token)
	default:
		return identity{}, status.Error(codes.Unauthenticated, "more than one authorization metadata value")
	}
}

// reviewToken asks the API server who a token stands for, or answers
// from the cache. The cache is keyed by the token's SHA-256, so a memory
// dump does not reveal tokens.
func (a *Authorizer) reviewToken(ctx context.Context, method, token string) (identity, error) {
	key := sha256.Sum256([]byte(token))
	if id, ok := a.tokenCache.get(key, a.clock.Now()); ok {
		return id, nil
	}
	rctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	review, err := a.kube.AuthenticationV1().TokenReviews().Create(rctx, &authnv1.TokenReview{
		Spec: authnv1.TokenReviewSpec{Token: token, Audiences: a.audiences},
	}, metav1.CreateOptions{})
	if err != nil {
		return identity{}, a.unavailable(ctx, method, "tokenreview", err)
	}
	st := review.Status
	if !st.Authenticated || st.User.Username == "" {
		// st.Error may say why; it is for fledge's operators, not callers.
		a.log.Info("grpc call refused: token not authenticated", "method", method, "error", st.Error)
		return identity{}, status.Error(codes.Unauthenticated, "invalid bearer token")
	}
	if len(a.audiences) > 0 && !slices.ContainsFunc(st.Audiences, func(aud string) bool { return slices.Contains(a.audiences, aud) }) {
		a.log.Info("grpc call refused: token for other audiences", "method", method, "user", st.User.Username, "audiences", st.Audiences)
		return identity{}, status.Errorf(codes.Unauthenticated, "bearer token is not for fledge (audiences %q)", a.audiences)
	}
	id := identity{user: st.User.Username, uid: st.User.UID, groups: slices.Clone(st.User.Groups), via: "token"}
	if len(st.User.Extra) > 0 {
		id.extra = make(map[string]authzv1.ExtraValue, len(st.User.Extra))
		for k, v := range st.User.Extra {
			id.extra[k] = authzv1.ExtraValue(slices.Clone(v))
		}
	}
	a.tokenCache.put(key, id, a.clock.Now())
	return id, nil
}

// certificateIdentity reads the caller from a client certificate that the
// TLS handshake verified against the server's client CAs.
func certificateIdentity(ctx context.Context) (identity, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return identity{}, false
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return identity{}, false
	}
	leaf := info.State.VerifiedChains[0][0]
	if leaf.Subject.CommonName == "" {
		return identity{}, false
	}
	groups := append(slices.Clone(leaf.Subject.Organization), "system:authenticated")
	return identity{user: leaf.Subject.CommonName, groups: groups, via: "certificate"}, true
}

// authorize asks the API server whether the caller may do what the
// method needs on the Deployment its request names.
func (a *Authorizer) authorize(ctx context.Context, method string, id identity, r rule, req any) error {
	access, err := r(req)
	if err != nil {
		// A table entry that does not fit its method: a bug, refused.
		a.log.Error("grpc call refused: access rule failed", "method", method, "error", err)
		return status.Errorf(codes.Internal, "%s: access rule: %v", method, err)
	}
	if access.AnyCaller {
		return nil
	}
	if err := access.validate(); err != nil {
		return status.Errorf(codes.InvalidArgument, "%s: %v", method, err)
	}
	rctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	review, err := a.kube.AuthorizationV1().SubjectAccessReviews().Create(rctx, &authzv1.SubjectAccessReview{
		Spec: authzv1.SubjectAccessReviewSpec{
			ResourceAttributes: &authzv1.ResourceAttributes{
				Namespace: access.Namespace,
				Verb:      access.Verb,
				Group:     "apps",
				Resource:  "deployments",
				Name:      access.Name,
			},
			User:   id.user,
			UID:    id.uid,
			Groups: id.groups,
			Extra:  id.extra,
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return a.unavailable(ctx, method, "subjectaccessreview", err)
	}
	if !review.Status.Allowed {
		a.log.Info("grpc call refused: not allowed", "method", method, "user", id.user, "via", id.via,
			"verb", access.Verb, "namespace", access.Namespace, "name", access.Name, "reason", review.Status.Reason)
		msg := fmt.Sprintf("user %q cannot %s", id.user, access)
		if review.Status.Reason != "" {
			msg += ": " + review.Status.Reason
		}
		return status.Error(codes.PermissionDenied, msg)
	}
	return nil
}

// unavailable is the refusal when the API server could not be asked: the
// caller may well be allowed, so it is told to retry, not that it is not.
func (a *Authorizer) unavailable(ctx context.Context, method, what string, err error) error {
	if ctx.Err() != nil {
		// The caller went away (or its deadline passed) first.
		return status.FromContextError(ctx.Err()).Err()
	}
	a.log.Warn("grpc call refused: cannot verify credentials", "method", method, "review", what, "error", err)
	return status.Errorf(codes.Unavailable, "cannot verify credentials: %s: %v", what, err)
}

// tokenCache remembers successful TokenReviews for a short while, keyed by
// the token's hash. A nil cache remembers nothing.
type tokenCache struct {
	ttl     time.Duration
	size    int
	mu      sync.Mutex
	entries map[[sha256.Size]byte]cached
}

type cached struct {
	id      identity
	expires time.Time
}

func (c *tokenCache) get(key [sha256.Size]byte, now time.Time) (identity, bool) {
	if c == nil {
		return identity{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok {
		return identity{}, false
	}
	if !now.Before(e.expires) {
		delete(c.entries, key)
		return identity{}, false
	}
	return e.id, true
}

func (c *tokenCache) put(key [sha256.Size]byte, id identity, now time.Time) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.size {
		for k, e := range c.entries {
			if !now.Before(e.expires) {
				delete(c.entries, k)
			}
		}
	}
	// Still full: forget any one entry; it costs that caller one review.
	for k := range c.entries {
		if len(c.entries) < c.size {
			break
		}
		delete(c.entries, k)
	}
	c.entries[key] = cached{id: id, expires: now.Add(c.ttl)}
}
