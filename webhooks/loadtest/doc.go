// Package loadtest is the load tester that answers fledge's rollout and
// pre-rollout hooks: an HTTP service that, for each signed call, sends a
// fixed number of requests to the canary with vegeta (and, if asked, as
// many to stable at the same time) and answers with the figures of the run
// (a webhooks.LoadResult). fledge judges the canary on
// the metrics that load produces, not on this answer; the answer is
// recorded as a check so that a person can see the load was there.
//
// # The call
//
// fledge POSTs a webhooks.Payload (any path but /healthz) signed with
// X-Fledge-Signature. The tester answers:
//
//	200  the run's webhooks.LoadResult, also for a run whose requests failed
//	400  a bad payload or metadata; the message names the field
//	401  unsigned, badly signed, or signed more than 5 minutes away from now
//	403  the target's host is not in the tester's --allow list
//	413  a body over 1 MiB
//	503  as many runs as --max-concurrent already running, or shutting down
//
// # Metadata
//
// The load comes from the hook's metadata in fledge's policy, written by the
// platform's admin; any other key is refused, so that a typo ("rps") is an
// error rather than a silent default:
//
//	url       required; http:// or https://, host in the --allow list
//	stableUrl optional; the same rules. Stable gets the same requests at
//	          the same rate and over the same seconds as url, in a second
//	          run beside the first
//	rate      requests per second, an integer, default 10, at most --max-rate
//	duration  a Go duration ("30s", "2m"), default 10s, at most --max-duration
//	method    GET, HEAD, POST, PUT, PATCH, DELETE or OPTIONS; default GET
//	headers   one "Name: value" per line; blank lines are skipped; a name given
//	          twice sends both values. Lines, not ";", separate headers, so that
//	          a cookie header ("cookie: a=1; b=2") can be written as is. Host,
//	          Content-Length, Transfer-Encoding and Connection cannot be set.
//	body      sent as is with every request
//
// For example, in YAML:
//
//	metadata:
//	  url: http://shop.demo.svc.cluster.local/checkout
//	  rate: "50"
//	  duration: 1m
//	  headers: |
//	    x-user-tier: beta
//	    cookie: canary=always
//
// # Loading both sides
//
// A comparison with stable (fledge's error-rate and latency comparisons)
// learns from both sides' requests over the same time. Load sent to the
// canary alone gives it all the evidence and stable only its organic
// traffic, which at low traffic is next to none: the comparison then waits
// on stable. With stableUrl, both sides get the load, so a verdict comes
// from the load's minutes rather than hours of organic traffic. The URL
// must reach stable's pods alone, not the app's host, which the mesh splits
// by weight: fledge creates the Service "<name>-stable" for this, beside
// "<name>-canary", while a policy's hook names a stableUrl, e.g.
//
//	metadata:
//	  url: http://shop-canary.shop.svc.cluster.local/
//	  stableUrl: http://shop-stable.shop.svc.cluster.local/
//
// The answer's figures are then the canary's, where an answer without
// stableUrl has them, and stable's are under "stable" (absent otherwise).
// A hook's thresholds in fledge's policy judge the canary's figures only:
// stable's are there for people to see that both sides were loaded, and
// the comparison judges the two sides from the mesh's telemetry. A run
// with stableUrl takes one of --max-concurrent, and twice the requests.
//
// A run sends exactly rate × duration requests (rounded down), paced at rate
// per second by vegeta, without following redirects (a redirect could
// leave the allowed hosts). A request succeeds when it got an answer with a
// status below 500: 4xx and 3xx answers are what the target chose to say,
// while 5xx answers and transport errors (refused, reset, timed out) are
// failures. Latencies are over every request, answered or not.
//
// # Deliveries
//
// fledge sends a call again with the same delivery id after a restart or a
// timeout, so a run is keyed by (namespace, name, deliveryId): a call for a
// run in progress waits for that run and gets its result, and a call for a
// run that completed within the last hour gets the recorded result without
// any new load. The record holds the latest 1000 runs. A run cut short by a
// shutdown is not recorded, so its delivery runs again in full.
//
// # Proxies
//
// Load goes through the proxy named by HTTP_PROXY / HTTPS_PROXY / NO_PROXY
// (http.ProxyFromEnvironment, which never proxies localhost), which is how
// fledge's sandbox sends it through its emulated mesh.
//
// The tester runs no commands: the metadata describes HTTP requests and
// nothing else.
package loadtest
