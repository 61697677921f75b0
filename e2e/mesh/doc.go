// Package mesh is an in-process stand-in for Istio's data plane, for
// fledge's end-to-end sandbox.
//
// fledge shifts traffic by writing VirtualService weights and judges a
// canary with PromQL over Istio's telemetry. The sandbox has a real
// kube-apiserver and a real Prometheus but no Envoy and no istiod, so this
// package plays their part as far as such a controller can observe: it
// watches VirtualServices, DestinationRules, Services and Pods, generates
// synthetic client traffic, routes every request as a client-side Envoy
// would (in memory: no request touches the network), lets the serving pod's
// annotations decide the answer, and serves Istio's standard metrics for
// Prometheus to scrape.
//
// # How it works
//
// Informer events mark the configuration dirty; after Options.Debounce of
// quiet (istiod's push debounce) the emulator lists its caches and compiles
// an immutable routing table, a pure function of those objects, which it
// publishes with an atomic pointer swap. Routing reads only the current
// table: no locks and no lister calls per request. AppliedVersion tells a
// test when an object it wrote has reached the table in use, and Problems
// lists what could not be taken as written (each is also logged once).
//
// Each Client runs in its own goroutine, sending RPS requests per second
// in batches every Options.Tick, with a PCG random source seeded from
// Options.Seed and the client's name, so that a run is reproducible.
// Latency is sampled and recorded, never slept.
//
// ProxyHandler also lets real HTTP clients through the mesh: it acts as
// the outbound sidecar of a named workload (the load tester, in the
// sandbox), taking proxy-style requests, routing each like generated
// traffic (metrics, counters, observers), and sleeping the sampled latency
// so that the caller measures it.
//
// # What of Istio is modelled
//
//   - Host names: short names in VirtualService hosts and destinations are
//     qualified with the rule's namespace; names with dots are taken as
//     written; leading wildcards ("*.example.com", "*") are supported, an
//     exact host winning over the most specific wildcard. Clients' short
//     hosts resolve like DNS search paths from their namespace.
//   - Only VirtualServices for sidecars (no gateways, or "mesh" among them)
//     route. When several claim one host the oldest wins (creation time,
//     then namespace/name) and the others are reported.
//   - HTTP routes in order, first match wins; match blocks ORed, conditions
//     ANDed: uri, method, authority, headers, withoutHeaders, queryParams,
//     ignoreUriCase, sourceLabels, sourceNamespace, gateways, name, with
//     exact, prefix and whole-value RE2 regex matches, an empty match (and,
//     as in Istio, the regex "*") meaning "present", and withoutHeaders
//     treating a missing header as empty, as Istio configures Envoy to.
//   - Weighted destinations split in proportion to their weights, like
//     Envoy's weighted clusters; a lone destination takes everything;
//     zero-weight destinations get nothing. directResponse and redirect
//     (status only) are answered by the proxy. set-cookie in route- or
//     destination-level headers.response reaches Response.SetCookies, and
//     generated clients replay such cookies per user, which is what a
//     cookie-sticky canary relies on.
//   - Subsets come from the DestinationRule for the destination host (one
//     in the Service's namespace first, then the oldest); their labels
//     narrow the Service's selector. Endpoints are the Running, Ready,
//     not-terminating pods the selector picks, taken round-robin.
//   - Envoy's local replies: 404 NR when no route matches, 503 NC for an
//     unknown host or subset (and for a route whose weights are all zero,
//     which Envoy would reject), 503 UH when there is no ready endpoint. For
//     gRPC requests these become HTTP 200 with the gRPC status Envoy derives
//     from the HTTP code.
//   - Telemetry: istio_requests_total and istio_request_duration_milliseconds
//     with Istio's labels and default buckets, reported by the source proxy
//     for every request and by the destination proxy for those a pod served.
//     Workload names, canonical service and revision, principals (mTLS
//     everywhere) follow Istio's derivation from pod labels and owners.
//
// # Behaviour of a revision
//
// Pod annotations, usually set in a Deployment's pod template:
//
//	sandbox.fledge.dev/error-rate: "0.05"          share of requests answered with an error
//	sandbox.fledge.dev/error-code: "503"           status of those errors, 500..599, default 500
//	sandbox.fledge.dev/grpc-error-rate: "0.1"      share of gRPC requests answered 200 + UNAVAILABLE
//	sandbox.fledge.dev/latency-ms: "p50=20,p95=80" log-normal latency; p90, p95 or p99 for the tail,
//	                                               a bare "20" for no spread; default p50=5,p95=20
//
// A malformed value or an unknown key under the prefix is a Problem naming
// the pod and annotation; that annotation is ignored and the pod stays
// healthy in that respect.
//
// # What is ignored
//
// These do not change which pod answers and are ignored without a Problem:
// retries, timeout, rewrite, mirror and mirrors, fault injection (so a fault
// abort does not produce errors here), corsPolicy, request header
// operations, response headers other than set-cookie, a redirect's target,
// destination ports (all ports of a Service lead to the same pods),
// DestinationRule traffic policies (load-balancing algorithm, consistent
// hashing, outlier detection, connection pools, TLS), exportTo, TCP and TLS
// routes (the emulator only generates HTTP and gRPC). Not modelled at all:
// ServiceEntry, Sidecar, Gateway traffic, authorization policies,
// locality, multiple clusters, Endpoints or EndpointSlices written by hand
// (endpoints come from pods), and delegate VirtualServices.
//
// A match field the emulator does not implement (port, scheme, statPrefix,
// JWT claim headers, or any field added to the API later) or an invalid
// value (weight outside 0..100, an invalid regex) makes the whole
// VirtualService uninterpretable: it is reported and skipped, never routed
// by a guess.
package mesh
