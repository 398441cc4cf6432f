package resolver_test

import (
	"context"
	"fmt"
	"log"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/smartroute/smartroute/resolver"
)

// Follow the instances of the "api" service registered in etcd. Watch
// delivers the whole set on every change; during an etcd outage it
// delivers the error with the last good set.
func ExampleNewEtcd() {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"127.0.0.1:2379"}, DialTimeout: 5 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	defer cli.Close()
	r, err := resolver.NewEtcd(cli, "api")
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	err = r.Watch(ctx, func(s resolver.State) {
		if s.Err != nil {
			log.Printf("api: %v (keeping %d endpoints)", s.Err, len(s.Endpoints))
			return
		}
		for _, e := range s.Endpoints {
			log.Printf("api: %s weight=%d zone=%s draining=%v", e.Addr, e.Weight, e.Zone, e.Draining)
		}
	})
	log.Print(err) // context.Canceled once cancel is called
}

// Build a resolver from a target string, whatever its scheme. The options
// that do not apply to the scheme are ignored.
func ExampleNew() {
	var cli *clientv3.Client // the application's etcd client
	for _, target := range []string{
		"etcd:///api",
		"dns:///api.example.com:443",
		"dns+srv:///_api._tcp.example.com",
		"static:///10.0.0.1:443,10.0.0.2:443",
	} {
		r, err := resolver.New(target,
			resolver.WithEtcdClient(cli),
			resolver.WithRefreshInterval(time.Second, time.Minute))
		if err != nil {
			log.Fatal(err)
		}
		_ = r // r.Watch(ctx, update)
	}
}

// Parse checks a target and says what is wrong with a bad one.
func ExampleParse() {
	t, err := resolver.Parse("dns://10.0.0.53/api.example.com:443")
	fmt.Printf("%s %q %q %v\n", t.Scheme, t.Authority, t.Endpoint, err)
	_, err = resolver.Parse("dns:///api.example.com")
	fmt.Println(err)
	_, err = resolver.Parse("consul:///api")
	fmt.Println(err)
	// Output:
	// dns "10.0.0.53" "api.example.com:443" <nil>
	// resolver: target "dns:///api.example.com": address "api.example.com": missing port: invalid address: invalid target
	// resolver: target "consul:///api": scheme "consul" is not etcd, dns, dns+srv or static: unknown scheme
}

// Resolve SRV records: one endpoint per address of each target, with the
// record's port and weight.
func ExampleNewDNSSRV() {
	r, err := resolver.NewDNSSRV("_api._tcp.example.com",
		resolver.WithNameservers("10.0.0.53"), // default: /etc/resolv.conf
		resolver.WithRefreshInterval(5*time.Second, 5*time.Minute))
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r.Watch(ctx, func(s resolver.State) {
		for _, e := range s.Endpoints {
			log.Printf("%s weight=%d priority=%d ttl=%v", e.Addr, e.Weight, e.Origin.Priority, e.Origin.TTL)
		}
	})
}

// Resolve the A and AAAA records of a name; each address becomes an
// endpoint on the target's port. The records are resolved again when
// their TTL runs out (within the refresh bounds).
func ExampleNewDNS() {
	r, err := resolver.NewDNS("api.example.com:443") // name servers from /etc/resolv.conf
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r.Watch(ctx, func(s resolver.State) {
		log.Printf("%d endpoints, err=%v", len(s.Endpoints), s.Err)
	})
}

// Register the etcd and dns+srv schemes with gRPC once, at start-up, so
// that plain grpc.NewClient calls can use them.
func ExampleRegisterGRPC() {
	var cli *clientv3.Client // the application's etcd client
	if err := resolver.RegisterGRPC(cli); err != nil {
		log.Fatal(err)
	}
	conn, err := grpc.NewClient("dns+srv:///_api._tcp.example.com",
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
}

// A fixed list, checked up front.
func ExampleNewStatic() {
	_, err := resolver.NewStatic("10.0.0.1:443", "10.0.0.2")
	fmt.Println(err)
	r, _ := resolver.NewStatic("10.0.0.2:443", "10.0.0.1:443")
	fmt.Println(r.Endpoints())
	// Output:
	// resolver: static: address "10.0.0.2": missing port: invalid address
	// [10.0.0.1:443 10.0.0.2:443]
}

// Dial a service registered in etcd with gRPC.
func ExampleNewGRPCBuilder() {
	var cli *clientv3.Client // the application's etcd client
	conn, err := grpc.NewClient("etcd:///api",
		grpc.WithResolvers(resolver.NewGRPCBuilder(cli)),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
}

// A balancer reads the endpoint's attributes back from gRPC's resolver
// state.
func ExampleEndpointFromGRPC() {
	var state balancer.ClientConnState // given to a balancer's UpdateClientConnState
	for _, ge := range state.ResolverState.Endpoints {
		ep, ok := resolver.EndpointFromGRPC(ge)
		if !ok {
			continue // not from this package's resolvers
		}
		if ep.Draining {
			continue // no new requests
		}
		log.Printf("%s weight=%d zone=%s labels=%v", ep.Addr, ep.Weight, ep.Zone, ep.Labels)
	}
}
