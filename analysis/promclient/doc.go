// Package promclient measures analysis checks in Prometheus: a Querier
// over client_golang's API client that turns every way a query can fail
// (Prometheus unreachable, a timeout, a query error, an answer over the
// size limit, an empty, NaN, infinite or multi-series result) into an
// error that names it, so that the check's verdict is Error and the
// rollout holds instead of judging. A TLS handshake that fails, or
// credentials that are refused, are named as such, with the setting to
// look at. Ping asks whether the whole path (address, TLS, credentials,
// headers) answers at all: the engine checks it before it starts.
//
// It is the network half of package analysis, kept apart so that the
// decision core, which reads analysis's checks and verdicts, never links
// an HTTP client.
package promclient
