// Package compare holds the end-to-end tests of fledge's comparisons with
// stable (rollout/compare.go): a canary judged against stable over the
// same time, look after look, from Prometheus's raw counters. A canary
// shown worse (more errors, a heavier latency tail) is rolled back within
// seconds; a healthy one with earlyPromotion is promoted before its
// schedule ends; a Prometheus outage holds the rollout and keeps the
// evidence. The benchmark here sets a faulty canary's exposure under a
// comparison beside today's threshold policy.
//
// They are a package of their own, apart from e2e/rollout, so that the two
// suites run side by side. Run them with:
//
//	go test -tags e2e -count=1 ./e2e/compare/
//	go test -tags e2e -run '^$' -bench FaultyCanary -benchtime 2x ./e2e/compare/
package compare
