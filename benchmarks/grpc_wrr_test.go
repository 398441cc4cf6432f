//go:build grpcwrr

package benchmarks

import "google.golang.org/grpc/balancer/weightedroundrobin"

// grpc-go's weighted_round_robin weighs endpoints by the ORCA load reports
// (qps, utilization) that servers send; the test servers send none, so every
// weight is equal and it behaves as round_robin. It imports
// github.com/cncf/xds/go, which go.mod does not require yet: scripts/bench
// builds it with a temporary modfile when needed.
func init() {
	moreContenders = append(moreContenders, grpcContender{"weighted_round_robin", weightedroundrobin.Name, `{}`})
}
