// Package apitest runs fledge's gRPC API in tests, as net/http/httptest
// does for HTTP: Backend is an in-memory api.Backend, and Start serves the
// real server (api.NewServer: TLS, the Authorizer, health, metrics) over it
// with a fake Kubernetes API server that knows one token and allows its
// user everything.
package apitest
