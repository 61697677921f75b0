// Package istio implements traffic.Router over Istio VirtualServices, with
// istio.io/client-go's typed clientset.
//
// A target is routed in one of two modes.
//
// Generated: when the target names no VirtualService, the router owns one,
// named after the app, for the app's host: one http route, "fledge", with
// the stable and the canary Service as weighted destinations (and the
// baseline Service, third, while the weights give it a share), after the
// match routes of a cohort ("fledge-cohort-<name>") and of a sticky cookie
// ("fledge-sticky") when the weights have them (see match.go). It carries
// the label app.kubernetes.io/managed-by=fledge, which is how the router
// tells its own objects from a team's; Ensure creates it and repairs hand
// edits (keeping a valid split), and Release deletes it. A host that some
// other VirtualService in the namespace already routes is a conflict: Istio
// would pick one of the two, and it may not be fledge's.
//
// User-owned: when the target names a team's VirtualService, the router
// changes nothing but the destination list of one http route, R, and the
// match routes it inserts right before R for a cohort
// ("<R>-fledge-cohort-<name>") or a sticky cookie ("<R>-fledge-sticky";
// without the "<R>-" when R has no name, which only a target naming no
// route can split). Each write is one JSON patch, computed from one read,
// that replaces /spec/http/<i>/route and replaces, adds or removes match
// routes, guarded by a test of the object's resourceVersion (and of R's
// name): a concurrent edit fails it as a whole, and it is recomputed. The
// rest of the object (gateways, other routes, R's matches, retries and
// timeouts, and fields newer than this client) is never decoded and written
// back, so it cannot be lost or reformatted. What this client encodes is
// R's destination list and the match routes, which copy R: a field newer
// than this client would be missing there. The canary destination is a
// copy of the stable one (port, header rules, but not a subset, which the
// canary host has no DestinationRule for) pointed at the canary Service;
// the baseline destination, present only while it has a share, is the
// same copy pointed at the baseline Service. Match routes go to the
// canary alone, never to the baseline. Release removes the match routes
// and puts back the stable destination alone, without a weight, as the
// team wrote it.
//
// A match route ANDs its header condition into each of R's match blocks,
// so a block of R that already matches that header is a conflict; so is a
// stable destination whose responses already add a Set-Cookie when a
// sticky cookie is asked for (the canary copy cannot add a second one).
//
// The router reads with Get rather than from an informer cache: it acts a
// few times per rollout step, and a fresh read is what the guarded patch
// needs anyway.
package istio
