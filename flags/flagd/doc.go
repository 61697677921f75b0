// Package flagd reads and evaluates flags in flagd's format: Source, a
// validated in-memory flagd document that flagd's in-process provider
// syncs from; Validate, flagd's schema and its own evaluator over a
// document before fledge writes it; Gates, flag gates evaluated through
// the OpenFeature SDK with flagd's in-process provider; and ConfigMapGates,
// which serves gates from ConfigMaps, one provider per ConfigMap version.
//
// It is the I/O half of package flags (providers, goroutines, ConfigMap
// listers), kept apart so that the decision core, which steps release
// flags with flags.Rewrite and reads gate answers, links none of it.
package flagd
