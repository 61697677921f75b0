// Package istio implements traffic.Router over Istio VirtualServices, with
// istio.io/client-go's typed clientset.
//
// A target is routed in one of two modes.
//
// Generated: when the target names no VirtualService, the router owns one,
// named after the app, for the app's host: one http route, "fledge", with
// the stable and the canary Service as weighted destinations. It carries
// the label app.kubernetes.io/managed-by=fledge, which is how the router
// tells its own objects from a team's; Ensure creates it and repairs hand
// edits (keeping a valid split), and Release deletes it. A host that some
// other VirtualService in the namespace already routes is a conflict: Istio
// would pick one of the two, and it may not be fledge's.
//
// User-owned: when the target names a team's VirtualService, the router
// changes nothing but the destination list of one http route, with a JSON
// patch that replaces /spec/http/<i>/route and is guarded by a test of the
// object's resourceVersion (and of the route's name). The rest of the object
// (gateways, matches, retries, timeouts, other routes, and fields newer than
// this client) is never decoded and written back, so it cannot be lost or
// reformatted. Only that route's destination list is encoded by this
// client; a destination field newer than it would be dropped there. The
// canary destination is a copy of the stable one (port, header rules, but
// not a subset, which the canary host has no DestinationRule for) pointed
// at the canary Service; Release puts back the stable destination alone,
// without a weight, as the team wrote it.
//
// The router reads with Get rather than from an informer cache: it acts a
// few times per rollout step, and a fresh read is what the guarded patch
// needs anyway.
package istio
