// Package rolloutpb is the Go code generated from rollouts.proto: the
// messages and the fledge.v1.Rollouts service that CI pipelines call.
//
// Do not edit the .pb.go files: change rollouts.proto and run
// `make generate`. The generated code is committed, so that building and
// testing fledge needs no protoc.
package rolloutpb
