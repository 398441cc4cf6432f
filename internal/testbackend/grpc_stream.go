package testbackend

import (
	"strings"
	"time"

	"google.golang.org/grpc"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
)

// StreamingOutputCall implements grpc.testing.TestService: it sends one
// response per request parameter, each after its IntervalUs, without the
// backend's injected latency (a stream's length is the caller's choice).
// Streams count in neither Requests nor InFlight, which are the unary
// calls'.
func (b *GRPC) StreamingOutputCall(req *testpb.StreamingOutputCallRequest, stream grpc.ServerStreamingServer[testpb.StreamingOutputCallResponse]) error {
	if err := stream.SetHeader(metadata.Pairs(strings.ToLower(HeaderBackend), b.name)); err != nil {
		return err
	}
	for _, p := range req.GetResponseParameters() {
		t := time.NewTimer(time.Duration(p.GetIntervalUs()) * time.Microsecond)
		select {
		case <-stream.Context().Done():
			t.Stop()
			return stream.Context().Err()
		case <-t.C:
		}
		if err := stream.Send(&testpb.StreamingOutputCallResponse{}); err != nil {
			return err
		}
	}
	return nil
}
