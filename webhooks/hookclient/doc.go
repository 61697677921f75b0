// Package hookclient makes the hook calls a policy names, over HTTP: the
// signed JSON payload of package webhooks, sent only to http(s) URLs of
// admin-written policy, with loopback, link-local and cloud-metadata
// addresses, the API server, the kubelet ports and private addresses
// outside the policy file's hookNetworks refused at dial time on every
// resolved address (see dial.go), only same-host 307/308 redirects
// followed, bodies bounded and quoted sanitized, retries with backoff
// within the caller's deadline, and a load tester's answer read into a
// LoadResult. Every way a call can fail is an Outcome with a message for
// people, never a panic.
//
// It is the network half of package webhooks, kept apart so that the
// decision core, which decides which hook to call under which delivery id,
// never links an HTTP client.
package hookclient
