// Package api serves fledge's gRPC API (fledge.v1.Rollouts, generated in
// rollout/rolloutpb) over the engine, and guards it.
//
// The pieces, each in its file:
//
//   - Authorizer (auth.go) finds out who calls, the Kubernetes way, and
//     whether they may, before any handler runs.
//   - Service (service.go, watch.go) implements the API over a Backend
//     (backend.go), the interface the engine implements: reads from its
//     informer cache, manual actions handed to its controller, image
//     changes, a stream of Flight changes, and who leads.
//   - Broadcaster (broadcast.go) fans Flight changes out to watchers, for
//     the engine's Backend.Subscribe: one producer, per-watcher buffers,
//     and a watcher that falls behind is dropped rather than waited for.
//   - NewServer (server.go) wires them into a gRPC server with TLS,
//     health, reflection and request metrics.
//   - apitest holds a fake Backend and a test server, as httptest does.
//
// Who: a bearer token in the `authorization` metadata, typically a CI
// pipeline's ServiceAccount token, checked with a TokenReview. Optionally
// (Config.ClientCertificates), a client certificate that the server's TLS
// configuration verified stands for user CN and groups O, as with the
// Kubernetes API server's x509 authentication.
//
// Whether: a SubjectAccessReview against the Deployment the call is about,
// in its namespace. Whoever could edit the Deployment with kubectl may
// drive its rollout, and nobody else; fledge's own, broader, permissions
// are never lent to a caller. The verb of each method is in one explicit
// table (see Authorizer); a method that is not in it is refused.
//
// Failures fail closed: when the API server cannot be asked, the call is
// refused with codes.Unavailable before its handler runs, so nothing
// changes.
//
// The service records the caller it reads with Caller as who took an
// action ("api:<user>"), and refuses mutating calls without one.
package api
