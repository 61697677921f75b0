// Package mesh is an in-process stand-in for Istio's data plane, for
// fledge's end-to-end sandbox.
//
// fledge shifts traffic by writing VirtualService weights and judges a
// canary with PromQL over Istio's telemetry. The sandbox has a real
// kube-apiserver and a real Prometheus but no Envoy and no istiod, so this
// package plays their part as far as such a controller can observe: it
// watches VirtualServices, DestinationRules, Services, Pods, ConfigMaps
// and Secrets, generates synthetic client traffic, routes every request as
// a client-side Envoy would (in memory: no request touches the network),
// lets the serving pod's annotations, the ConfigMaps and Secrets it reads
// (as its kubelet delivers them) and the variant of its feature flag
// decide the answer, and serves Istio's standard metrics for Prometheus to
// scrape.
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
//     One label is added, flag_variant: the variant of its feature flag the
//     serving pod evaluated (see below), as a mesh reports it with a
//     Telemetry tag override copying the app's x-flag-variant response
//     header, on both reporters. It is empty when no pod served the request
//     or the pod has no flag, and Prometheus then treats it as absent.
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
//	sandbox.fledge.dev/body-diff-rate: "0.05"      share of successful answers whose body differs from
//	                                               the one every other revision answers the request with
//	sandbox.fledge.dev/error-rate-after: "30s=0.2" once the pod has been up 30 s (since its creation), 20% of
//	                                               requests are errors instead (a leak, a cache that fills:
//	                                               a revision healthy as a canary regresses after promotion)
//
// Every answer has a body as a response comparison sees one
// (Response.BodyHash and BodyLen): a pod's successful answer is a function
// of the request (method, host without "-shadow", path, user), so stable
// and a healthy canary answer a request alike; an error answer is an error
// page naming the pod.
//
// A malformed value or an unknown key under the prefix is a Problem naming
// the pod and annotation; that annotation is ignored and the pod stays
// healthy in that respect. The ConfigMaps and Secrets a pod reads can set
// the same aspects (next section).
//
// # Configuration a pod reads
//
// Pods have no containers here (kwok runs none), so the emulator plays the
// kubelet and an app that reads its configuration. A pod references the
// ConfigMaps and Secrets of its namespace named by its volumes
// (configMap, secret, and the configMap and secret sources of a projected
// volume) and by its init and app containers' env (configMapKeyRef,
// secretKeyRef) and envFrom. Environment variables, and a volume that
// every container mounts through subPath (or subPathExpr), or none mounts,
// are read once, when the pod starts; a volume mounted as a directory is
// live: the kubelet rewrites its files when the object changes.
//
// The emulator keeps the history of each object's content as its informer
// delivered it (a deletion is a version "missing"). A pod starts when the
// emulator first sees it ready (Running, Ready, not terminating); a pod
// already ready when the emulator starts, and the objects in the
// informers' first lists, count as being there before anything the
// emulator saw afterwards, so such a pod reads those objects as listed. A
// pod that turns unready and ready again keeps its start. The pod's
// creation time and status.startTime are not used: they come at a second's
// precision from another clock. The pod sees, of a reference read at
// start, the newest version observed at or before its start; of a live
// one, the newest observed at or before max(start, now - KubeletSync).
// Options.KubeletSync defaults to 20s; a real kubelet takes up to its sync
// period (about a minute) plus its object cache's TTL, so the default
// holds a tool that must act before a change reaches running pods to a
// stricter deadline than a real cluster does. The routing table is
// rebuilt on every change of an object's content, like any informer
// event, and again when a live view comes due, KubeletSync after the
// change: a pod's view is what the table in use gives it, so it moves at
// most a debounce after that. Versions no pod can still see are
// forgotten.
//
// Data keys named sandbox.fledge.dev.<aspect> (ConfigMap data and
// binaryData, Secret data) set what the annotation
// sandbox.fledge.dev/<aspect> does, with the same values: error-rate,
// latency-ms, error-rate-after, flag, variant.<variant>.<aspect> and the
// rest. The app reads every key of an object whichever way it references
// it (a configMapKeyRef included). Config wins over the pod's
// annotations, aspect by aspect; the objects apply in order, a later one
// winning: those referenced by volumes, by name, then those referenced by
// env or envFrom, by name (an object referenced both ways takes its place
// among the latter, and is live if a volume mounts it so). A malformed
// value is a Problem naming the object and key, as "configmap
// shop/app-config: data[sandbox.fledge.dev.error-rate]: ...", and leaves
// that aspect at its default (not at the annotation's value). A missing
// object, or one without such keys, changes nothing.
//
// ConfigServed is the ground truth of what was served with which content:
// per pod and object it references, the requests the pod answered
// (whatever the status) while its view had a content hash,
// ConfigDataHash of its data and binaryData ("" while missing). The views
// and their counters are prepared when the table is built, so a request
// only adds to atomic counters.
//
// # Response comparison
//
// A pod whose first container's args are those of fledge's comparator
// mode plays fledge's response comparator (traffic/mirrorcmp), which
// fledge makes the destination of a canary's mirror:
//
//	args: ["mirror-compare", "--canary=http://shop-canary.demo:80", "--stable=http://shop-stable.demo:80",
//	       "--workload=shop-canary", "--namespace=demo"]
//
// For each request it receives (a mirrored copy, typically) of a safe
// method (GET, HEAD, OPTIONS, TRACE) it routes the same request (method,
// path, user, headers, plus mirrorcmp's LoopHeader) through the mesh to
// the canary's URL and to stable's, as requests of its own workload,
// which the app sees with the copy's host without "-shadow"; compares the
// answers with mirrorcmp.Compare (an answer no pod gave, for want of a
// route, a Service or a ready endpoint, is unanswered); and answers the
// copy 204 once both have answered, plus its own latency. Another method
// is counted unsafe and asked of neither. The comparator's requests are
// never mirrored, and a comparator they reach counts them dropped (202)
// and asks nothing further, so comparisons cannot recurse. Each request is
// counted in fledge_mirror_comparisons_total{destination_workload,
// destination_workload_namespace, result}, served beside Istio's metrics,
// and in MirrorComparisons. Any other arg, a missing or repeated flag, or
// an upstream that is not an http(s) base URL is a Problem naming the pod
// and arg, and the pod answers every request 503. Of a comparator pod's
// annotations only latency-ms applies: it evaluates no flag and answers no
// error of its own.
//
// # Feature flags
//
// A pod may play an app that evaluates a release flag on every request,
// in flagd's JSON format, from a ConfigMap it reads through the
// OpenFeature flagd provider (the real one, in-process), which is the flag
// fledge rewrites in lockstep with a canary:
//
//	sandbox.fledge.dev/flag-source: "flags/flags.json"     ConfigMap flags, data key flags.json, in the pod's namespace
//	sandbox.fledge.dev/flag: "new-checkout"                the flag to evaluate
//	sandbox.fledge.dev/variant.on.error-rate: "0.08"       the behaviour of requests served with variant "on";
//	sandbox.fledge.dev/variant.on.latency-ms: "p50=40"     error-rate, error-code, grpc-error-rate, latency-ms and
//	                                                       body-diff-rate as above, each falling back to the pod's own
//
// The evaluation context is what an app would build from the request: the
// targeting key is the x-user-id header (Request.User when it is absent),
// and every request header is an attribute under its lower-case name, so
// that targeting can use {"var":"x-user-tier"} or fractional rollouts over
// {"var":"targetingKey"}. A boolean flag is evaluated as a boolean, any
// other as a string; the variant decides the behaviour, and is reported in
// Response.Variant, ServedVariants and the flag_variant metric label. A
// failed evaluation (flag missing or of another type, provider not ready)
// is variant "error", answered with the pod's base behaviour.
//
// The emulator keeps one flag source and provider per ConfigMap key a
// ready pod reads, started before the first table that needs it is
// published and fed from a ConfigMap informer, so that a change to the
// document reaches the apps within milliseconds, with no rebuild. A
// document that is not valid flagd JSON, or a ConfigMap or key that is
// gone, is logged, and the apps keep the last valid flags, as an app whose
// flag file turns bad does. A source no ready pod has read for 30s is shut
// down; all are shut down by Stop.
//
// # What is ignored
//
// These do not change which pod answers and are ignored without a Problem:
// retries, timeout, rewrite, fault injection (so a fault
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
