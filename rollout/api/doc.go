// Package api guards fledge's gRPC API (fledge.v1.Rollouts, generated in
// rollout/rolloutpb): it finds out who calls, the Kubernetes way, and
// whether they may, before any handler runs.
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
// The service implementation reads the caller's name with Caller, to
// record who took an action.
package api
