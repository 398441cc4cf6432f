package benchmarks

import "google.golang.org/grpc/balancer/weightedroundrobin"

// grpc-go's weighted_round_robin weighs endpoints by the ORCA load reports
// (qps and utilization) that servers send. The routing servers report them
// (testbackend.WithLoadReport), and the config lets the weights act at once
// (no blackout period, a weight update every 100 ms) rather than after the
// default 10 s, so that it is compared at its best.
func init() {
	moreContenders = append(moreContenders, grpcContender{"weighted_round_robin", weightedroundrobin.Name,
		`{"blackoutPeriod":"0s","weightUpdatePeriod":"0.1s"}`})
}
