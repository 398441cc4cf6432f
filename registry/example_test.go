package registry_test

import (
	"context"
	"log"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/smartroute/smartroute/registry"
)

// Register an instance, drain it before shutting down, then deregister.
func ExampleRegister() {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"127.0.0.1:2379"}, DialTimeout: 5 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	defer cli.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	reg, err := registry.Register(ctx, cli, registry.Instance{
		Service: "api",
		Addr:    "10.0.0.7:8443",
		Zone:    "eu-west-1a",
		Labels:  map[string]string{"canary": "true"},
	}, registry.WithTTL(10*time.Second))
	if err != nil {
		// errors.Is(err, registry.ErrDuplicateInstance) when the ID is
		// live at another address. At the same address it is this
		// instance before a restart: Register takes it over.
		log.Fatal(err)
	}
	defer reg.Close(context.Background()) // revokes the lease: the key disappears at once

	// ... serve ...

	// Change the weight: the change applies to the current value and
	// returns once etcd holds the result.
	if err := reg.Update(ctx, func(i *registry.Instance) { i.Weight = 2 }); err != nil {
		log.Print(err) // errors.Is(err, registry.ErrNotRegistered): written when registered again
	}

	// On shutdown: stop new requests first, finish the ones in flight.
	if err := reg.Drain(ctx); err != nil {
		log.Print(err)
	}
}

// Watch the registration's state: it turns Lost when the lease goes (etcd
// unreachable past the TTL, lease revoked) and Registered again once it has
// re-registered under a new lease.
func ExampleRegistration_WaitForStateChange() {
	var reg *registry.Registration // from registry.Register
	ctx := context.Background()
	for state := reg.State(); state != registry.Closed; state = reg.State() {
		if !reg.WaitForStateChange(ctx, state) {
			return
		}
		log.Printf("registration %s: %v (%v)", reg.Key(), reg.State(), reg.Err())
	}
}
