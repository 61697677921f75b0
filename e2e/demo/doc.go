// Package demo is the scenario `make demo` plays in the sandbox: fledge,
// built from this checkout and running as its own process, takes a
// Deployment over, canaries a healthy revision through every step and
// promotes it, then canaries a faulty one and rolls it back, while the
// demo prints each decision with the checks behind it.
package demo
