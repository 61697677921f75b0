// Package cli is fledgectl: the commands, how they find fledge and the
// caller's credentials, how they print, and what they exit with. The
// command's main.go only wires it to the process.
//
// fledgectl talks to fledge's gRPC API (fledge.v1.Rollouts), never to the
// Kubernetes API server: fledge checks the caller's token and permissions
// itself. The address therefore comes from --server or FLEDGE_SERVER only
// (a kubeconfig names the API server, not fledge); credentials and the
// namespace come from flags, then environment variables, then the
// kubeconfig's current context, as kubectl users expect: the context's
// user's token is got through client-go (token files, exec plugins, auth
// providers). lint alone needs no server: it runs fledge's parsers of
// policies and annotations offline.
//
// Installed as kubectl-fledge, it is the kubectl plugin `kubectl fledge`
// and says so in its help (plugin.go). A failed call is said on one line
// with an exit code telling whether retrying may help (failure.go).
package cli
