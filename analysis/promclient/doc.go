// Package promclient measures analysis checks in Prometheus: a Querier
// over client_golang's API client that turns every way a query can fail
// (Prometheus unreachable, a timeout, a query error, an answer over the
// size limit, an empty, NaN, infinite or multi-series result) into an
// error that names it, so that the check's verdict is Error and the
// rollout holds instead of judging.
//
// It is the network half of package analysis, kept apart so that the
// decision core, which reads analysis's checks and verdicts, never links
// an HTTP client.
package promclient
