// Build-only module for the protoc plugins behind `make generate`
// (rollout/rolloutpb). protoc itself is Debian's protobuf-compiler.
module github.com/fledgehq/fledge/e2e/tools/proto

go 1.26

tool (
	google.golang.org/grpc/cmd/protoc-gen-go-grpc
	google.golang.org/protobuf/cmd/protoc-gen-go
)

require (
	google.golang.org/grpc/cmd/protoc-gen-go-grpc v1.6.1 // indirect
	google.golang.org/protobuf v1.36.12 // indirect
)
