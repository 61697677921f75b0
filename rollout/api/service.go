package api

import (
	"context"
	"encoding/base64"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/utils/clock"

	"github.com/fledgehq/fledge/rollout"
	"github.com/fledgehq/fledge/rollout/apis/fledge/v1alpha1"
	"github.com/fledgehq/fledge/rollout/rolloutpb"
)

// The ErrorInfo detail of the codes.Unavailable a replica answers when it
// is not the leader; its metadata holds the leader's identity under
// "leader". See LeaderFromError.
const (
	ErrorDomain     = "fledge.dev"
	ReasonNotLeader = "NOT_LEADER"
)

// Defaults of ServiceOptions.
const (
	DefaultBookmarkInterval = 30 * time.Second
	DefaultWatchQueue       = 256
	DefaultPageSize         = 100
	MaxPageSize             = 500
)

// ServiceOptions tune a Service; the zero value is the defaults.
type ServiceOptions struct {
	// BookmarkInterval is how often a watch stream gets a BOOKMARK, so that
	// idle streams are not cut by proxies and clients learn where to
	// resume. Default 30s.
	BookmarkInterval time.Duration
	// WatchQueue is how many events may wait to be sent to one watcher,
	// beyond its initial state, before it is ended with
	// codes.ResourceExhausted: a slow client never holds up the others,
	// nor makes fledge buffer without bound. Default 256.
	WatchQueue int
	// Clock ticks bookmarks. Default: the real clock.
	Clock clock.WithTicker
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Version is the build the Version call reports; default: version
	// "devel", nothing else known.
	Version *rolloutpb.VersionResponse
}

// Service implements fledge.v1.Rollouts over a Backend. It expects the
// Authorizer in front of it (NewServer installs both): it reads the caller
// with Caller and refuses mutating calls without one.
type Service struct {
	rolloutpb.UnimplementedRolloutsServer

	backend  Backend
	bookmark time.Duration
	queue    int
	clock    clock.WithTicker
	log      *slog.Logger
	version  *rolloutpb.VersionResponse
}

var _ rolloutpb.RolloutsServer = (*Service)(nil)

// NewService returns a Service over b.
func NewService(b Backend, opts ServiceOptions) *Service {
	s := &Service{backend: b, bookmark: opts.BookmarkInterval, queue: opts.WatchQueue, clock: opts.Clock, log: opts.Logger, version: opts.Version}
	if s.version == nil {
		s.version = &rolloutpb.VersionResponse{Version: "devel"}
	}
	if s.bookmark <= 0 {
		s.bookmark = DefaultBookmarkInterval
	}
	if s.queue <= 0 {
		s.queue = DefaultWatchQueue
	}
	if s.clock == nil {
		s.clock = clock.RealClock{}
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	return s
}

// Version answers which build of fledge serves the call.
func (s *Service) Version(context.Context, *rolloutpb.VersionRequest) (*rolloutpb.VersionResponse, error) {
	return proto.CloneOf(s.version), nil
}

// List returns the Flights of a namespace, sorted by name, a page at a
// time.
func (s *Service) List(ctx context.Context, req *rolloutpb.ListRequest) (*rolloutpb.ListResponse, error) {
	ns := req.GetNamespace()
	if err := validateNamespace(ns); err != nil {
		return nil, err
	}
	sel, err := parseSelector(req.GetLabelSelector())
	if err != nil {
		return nil, err
	}
	size := int(req.GetPageSize())
	switch {
	case size < 0:
		return nil, invalid("page_size", "is %d: want 0 (the default, %d) or more", size, DefaultPageSize)
	case size == 0:
		size = DefaultPageSize
	case size > MaxPageSize:
		size = MaxPageSize
	}
	after, err := decodePageToken(req.GetPageToken())
	if err != nil {
		return nil, err
	}
	flights, err := s.backend.List(ctx, ns, sel)
	if err != nil {
		return nil, s.backendError(ctx, err, ns, "")
	}
	flights = slices.Clone(flights)
	slices.SortFunc(flights, func(a, b *v1alpha1.Flight) int { return strings.Compare(a.Name, b.Name) })
	resp := &rolloutpb.ListResponse{ResourceVersion: newestVersion(flights)}
	i, _ := slices.BinarySearchFunc(flights, after, func(f *v1alpha1.Flight, name string) int {
		if f.Name <= name {
			return -1
		}
		return 1
	})
	page := flights[i:min(i+size, len(flights))]
	for _, f := range page {
		resp.Flights = append(resp.Flights, FlightToProto(f))
	}
	if i+size < len(flights) {
		resp.NextPageToken = encodePageToken(page[len(page)-1].Name)
	}
	return resp, nil
}

// Page tokens are opaque to clients: the name a page ended with.
const pageTokenPrefix = "after:"

func encodePageToken(name string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(pageTokenPrefix + name))
}

func decodePageToken(tok string) (string, error) {
	if tok == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(tok)
	name, ok := strings.CutPrefix(string(b), pageTokenPrefix)
	if err != nil || !ok || name == "" {
		return "", invalid("page_token", "%q is not a token this server gave", tok)
	}
	return name, nil
}

func parseSelector(s string) (labels.Selector, error) {
	if strings.TrimSpace(s) == "" {
		return labels.Everything(), nil
	}
	sel, err := labels.Parse(s)
	if err != nil {
		return nil, invalid("label_selector", "%q: %v", s, err)
	}
	return sel, nil
}

// Get returns one Flight.
func (s *Service) Get(ctx context.Context, req *rolloutpb.GetRequest) (*rolloutpb.GetResponse, error) {
	f, err := s.get(ctx, req.GetNamespace(), req.GetName())
	if err != nil {
		return nil, err
	}
	return &rolloutpb.GetResponse{Flight: FlightToProto(f)}, nil
}

// Explain returns a Flight and its decision log, optionally only the
// decisions about one revision.
func (s *Service) Explain(ctx context.Context, req *rolloutpb.ExplainRequest) (*rolloutpb.ExplainResponse, error) {
	f, err := s.get(ctx, req.GetNamespace(), req.GetName())
	if err != nil {
		return nil, err
	}
	resp := &rolloutpb.ExplainResponse{Flight: FlightToProto(f)}
	for i := range f.Status.Decisions {
		d := &f.Status.Decisions[i]
		if req.GetRevision() == "" || d.Revision == req.GetRevision() {
			resp.Decisions = append(resp.Decisions, DecisionToProto(d))
		}
	}
	return resp, nil
}

func (s *Service) get(ctx context.Context, ns, name string) (*v1alpha1.Flight, error) {
	if err := validateTarget(ns, name); err != nil {
		return nil, err
	}
	f, err := s.backend.Get(ctx, ns, name)
	if err != nil {
		return nil, s.backendError(ctx, err, ns, name)
	}
	return f, nil
}

// Promote passes the current step, or with full promotes the canary.
func (s *Service) Promote(ctx context.Context, req *rolloutpb.PromoteRequest) (*rolloutpb.PromoteResponse, error) {
	kind := v1alpha1.ActionPromote
	if req.GetFull() {
		kind = v1alpha1.ActionPromoteFull
	}
	r, err := s.act(ctx, req.GetNamespace(), req.GetName(), Action{Kind: kind, RequestID: req.GetRequestId(), Reason: req.GetReason(), Revision: req.GetRevision()})
	if err != nil {
		return nil, err
	}
	return &rolloutpb.PromoteResponse{Flight: r.flight, Replayed: r.replayed, Action: r.action}, nil
}

// Abort rolls the canary back.
func (s *Service) Abort(ctx context.Context, req *rolloutpb.AbortRequest) (*rolloutpb.AbortResponse, error) {
	r, err := s.act(ctx, req.GetNamespace(), req.GetName(), Action{Kind: v1alpha1.ActionAbort, RequestID: req.GetRequestId(), Reason: req.GetReason(), Revision: req.GetRevision()})
	if err != nil {
		return nil, err
	}
	return &rolloutpb.AbortResponse{Flight: r.flight, Replayed: r.replayed, Action: r.action}, nil
}

// Pause holds the canary at its weight.
func (s *Service) Pause(ctx context.Context, req *rolloutpb.PauseRequest) (*rolloutpb.PauseResponse, error) {
	r, err := s.act(ctx, req.GetNamespace(), req.GetName(), Action{Kind: v1alpha1.ActionPause, RequestID: req.GetRequestId(), Reason: req.GetReason(), Revision: req.GetRevision()})
	if err != nil {
		return nil, err
	}
	return &rolloutpb.PauseResponse{Flight: r.flight, Replayed: r.replayed, Action: r.action}, nil
}

// Resume continues a paused canary.
func (s *Service) Resume(ctx context.Context, req *rolloutpb.ResumeRequest) (*rolloutpb.ResumeResponse, error) {
	r, err := s.act(ctx, req.GetNamespace(), req.GetName(), Action{Kind: v1alpha1.ActionResume, RequestID: req.GetRequestId(), Reason: req.GetReason(), Revision: req.GetRevision()})
	if err != nil {
		return nil, err
	}
	return &rolloutpb.ResumeResponse{Flight: r.flight, Replayed: r.replayed, Action: r.action}, nil
}

// Retry canaries the rejected revision again.
func (s *Service) Retry(ctx context.Context, req *rolloutpb.RetryRequest) (*rolloutpb.RetryResponse, error) {
	r, err := s.act(ctx, req.GetNamespace(), req.GetName(), Action{Kind: ActionRetry, RequestID: req.GetRequestId(), Reason: req.GetReason(), Revision: req.GetRevision()})
	if err != nil {
		return nil, err
	}
	return &rolloutpb.RetryResponse{Flight: r.flight, Replayed: r.replayed, Action: r.action}, nil
}

type acted struct {
	flight   *rolloutpb.Flight
	replayed bool
	action   *rolloutpb.Action
}

// act validates a manual action, checks its revision precondition against
// the cached Flight and hands it to the controller.
func (s *Service) act(ctx context.Context, ns, name string, a Action) (acted, error) {
	if err := s.validateMutation(ns, name, a.RequestID, a.Reason); err != nil {
		return acted{}, err
	}
	if a.Kind == v1alpha1.ActionAbort && strings.TrimSpace(a.Reason) == "" {
		return acted{}, status.Error(codes.InvalidArgument, "reason is required for abort")
	}
	if a.Revision != "" {
		if errs := validation.IsValidLabelValue(a.Revision); len(errs) > 0 {
			return acted{}, invalid("revision", "%q is not a revision (a pod template hash): %s", a.Revision, strings.Join(errs, "; "))
		}
	}
	by, err := s.caller(ctx)
	if err != nil {
		return acted{}, err
	}
	a.By = by
	if err := s.mayAct(); err != nil {
		return acted{}, err
	}
	before, err := s.get(ctx, ns, name)
	if err != nil {
		return acted{}, err
	}
	// A prompt answer from the cache; Act checks again, atomically. A
	// retried call whose revision moved on meanwhile is refused here even
	// if its first attempt was taken: the pipeline learns the revision it
	// meant is no longer the one in flight, which is what matters to it.
	target := preconditionRevision(before, a.Kind)
	if a.Revision != "" && a.Revision != target {
		return acted{}, revisionMismatch(ns, name, a, target)
	}
	f, replayed, err := s.backend.Act(ctx, ns, name, a)
	if err != nil {
		return acted{}, s.backendError(ctx, err, ns, name)
	}
	if f == nil {
		f = before
	}
	revision := a.Revision
	if revision == "" {
		revision = target
	}
	s.log.Info("manual action", "namespace", ns, "name", name, "action", a.Kind, "by", a.By,
		"requestID", a.RequestID, "revision", revision, "replayed", replayed, "reason", a.Reason)
	return acted{flight: FlightToProto(f), replayed: replayed, action: recordedAction(f, a, revision)}, nil
}

// preconditionRevision is the revision a request's revision field is held
// to: the rejected one for retry, the canary otherwise.
func preconditionRevision(f *v1alpha1.Flight, kind v1alpha1.ActionKind) string {
	if kind == ActionRetry {
		return f.Status.RejectedRevision
	}
	return f.Status.CanaryRevision
}

func revisionMismatch(ns, name string, a Action, actual string) error {
	which := "canary"
	if a.Kind == ActionRetry {
		which = "rejected"
	}
	if actual == "" {
		return status.Errorf(codes.FailedPrecondition, "flight %s/%s has no %s revision, so not %q: %s not applied", ns, name, which, a.Revision, a.Kind)
	}
	return status.Errorf(codes.FailedPrecondition, "the %s revision of flight %s/%s is %q, not %q: %s not applied", which, ns, name, actual, a.Revision, a.Kind)
}

// recordedAction is the action as the response reports it. Its time is
// the Flight's record of it, when the last action recorded is this one.
func recordedAction(f *v1alpha1.Flight, a Action, revision string) *rolloutpb.Action {
	out := &rolloutpb.Action{Kind: ActionKindToProto(a.Kind), By: a.By, Reason: a.Reason, RequestId: a.RequestID, Revision: revision}
	if la := f.Status.LastAction; la != nil && la.Kind == a.Kind && la.By == a.By && la.Reason == a.Reason {
		out.At = timestamp(&la.At)
	}
	return out
}

// SetImage sets a container's image in the Deployment's template.
func (s *Service) SetImage(ctx context.Context, req *rolloutpb.SetImageRequest) (*rolloutpb.SetImageResponse, error) {
	ns, name := req.GetNamespace(), req.GetName()
	if err := s.validateMutation(ns, name, req.GetRequestId(), req.GetReason()); err != nil {
		return nil, err
	}
	if err := validateContainer(req.GetContainer()); err != nil {
		return nil, err
	}
	if msg := validImage(req.GetImage()); msg != "" {
		return nil, invalid("image", "%s", msg)
	}
	by, err := s.caller(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.mayAct(); err != nil {
		return nil, err
	}
	// Only opted-in Deployments: SetImage drives rollouts, it is not a
	// general way to edit Deployments.
	f, err := s.get(ctx, ns, name)
	if err != nil {
		return nil, err
	}
	ir := ImageRequest{Container: req.GetContainer(), Image: req.GetImage(), RequestID: req.GetRequestId(), By: by, Reason: req.GetReason()}
	change, err := s.backend.SetImage(ctx, ns, name, ir)
	if err != nil {
		return nil, s.backendError(ctx, err, ns, name)
	}
	if now, err := s.backend.Get(ctx, ns, name); err == nil {
		f = now
	}
	s.log.Info("image set", "namespace", ns, "name", name, "container", ir.Container, "image", ir.Image,
		"previous", change.Previous, "revision", change.Revision, "changed", change.Changed,
		"by", by, "requestID", ir.RequestID, "replayed", change.Replayed, "reason", ir.Reason)
	return &rolloutpb.SetImageResponse{
		Flight:   FlightToProto(f),
		Replayed: change.Replayed,
		Action: &rolloutpb.Action{
			Kind: rolloutpb.ActionKind_ACTION_KIND_SET_IMAGE, By: by, Reason: ir.Reason,
			RequestId: ir.RequestID, Revision: change.Revision,
		},
		Revision:      change.Revision,
		Changed:       change.Changed,
		PreviousImage: change.Previous,
	}, nil
}

func (s *Service) validateMutation(ns, name, requestID, reason string) error {
	if err := validateTarget(ns, name); err != nil {
		return err
	}
	if err := validateRequestID(requestID); err != nil {
		return err
	}
	return validateReason(reason)
}

// caller is who the action is recorded as taken by.
func (s *Service) caller(ctx context.Context) (string, error) {
	user, ok := Caller(ctx)
	if !ok || user == "" {
		// Only a server without the Authorizer gets here: fail closed.
		return "", status.Error(codes.Unauthenticated, "no authenticated caller: mutating calls are recorded with who made them")
	}
	return "api:" + user, nil
}

func (s *Service) mayAct() error {
	if ok, leader := s.backend.Leader(); !ok {
		return notLeader(leader)
	}
	return nil
}

// notLeader is codes.Unavailable naming the leader, in the message and in
// an ErrorInfo detail.
func notLeader(leader string) error {
	st := status.New(codes.Unavailable, (&NotLeaderError{Leader: leader}).Error())
	if withInfo, err := st.WithDetails(&errdetails.ErrorInfo{
		Reason: ReasonNotLeader, Domain: ErrorDomain, Metadata: map[string]string{"leader": leader},
	}); err == nil {
		st = withInfo
	}
	return st.Err()
}

// LeaderFromError reports whether err is a replica's refusal to act
// because it is not the leader, and the leader's identity if known.
func LeaderFromError(err error) (leader string, ok bool) {
	st, isStatus := status.FromError(err)
	if !isStatus || st.Code() != codes.Unavailable {
		return "", false
	}
	for _, d := range st.Details() {
		if info, isInfo := d.(*errdetails.ErrorInfo); isInfo && info.GetDomain() == ErrorDomain && info.GetReason() == ReasonNotLeader {
			return info.GetMetadata()["leader"], true
		}
	}
	return "", false
}

// backendError maps a Backend's error to a status; see Backend.
func (s *Service) backendError(ctx context.Context, err error, ns, name string) error {
	var notLeaderErr *NotLeaderError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &notLeaderErr):
		return notLeader(notLeaderErr.Leader)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	target := ns + "/" + name
	if name == "" {
		target = "namespace " + ns
	}
	switch {
	case apierrors.IsNotFound(err) && name != "":
		return status.Errorf(codes.NotFound, "flight %s/%s not found (no Deployment %s/%s opted in with %s)", ns, name, ns, name, rollout.AnnotationRollout)
	case errors.Is(err, ErrNotApplicable), errors.Is(err, ErrRevisionMismatch):
		return status.Errorf(codes.FailedPrecondition, "flight %s: %v", target, err)
	case errors.Is(err, ErrRequestIDReused), errors.Is(err, ErrUnknownContainer):
		return status.Errorf(codes.InvalidArgument, "flight %s: %v", target, err)
	case apierrors.IsConflict(err), apierrors.IsServerTimeout(err), apierrors.IsTimeout(err),
		apierrors.IsTooManyRequests(err), apierrors.IsServiceUnavailable(err):
		return status.Errorf(codes.Unavailable, "flight %s: %v: retry", target, err)
	}
	if ctx.Err() != nil {
		return status.FromContextError(ctx.Err()).Err()
	}
	s.log.Error("grpc call failed", "flight", target, "error", err)
	return status.Errorf(codes.Internal, "flight %s: %v", target, err)
}
