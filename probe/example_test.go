package probe_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/smartroute/smartroute/internal/certgen"
	"github.com/smartroute/smartroute/internal/testbackend"
	"github.com/smartroute/smartroute/probe"
)

// A Prober watching two backends, one of which answers 503: subscribers
// hear the verdicts.
func Example() {
	up, err := testbackend.NewHTTP()
	if err != nil {
		log.Fatal(err)
	}
	defer up.Close()
	down, err := testbackend.NewHTTP(testbackend.WithStatus(503))
	if err != nil {
		log.Fatal(err)
	}
	defer down.Close()

	p := probe.New(probe.HTTP{Path: "/healthz"},
		probe.WithInterval(20*time.Millisecond), probe.WithRise(2), probe.WithFall(2))
	defer p.Close()
	changes := make(chan probe.Event, 2)
	p.Subscribe(func(ev probe.Event) {
		if ev.HealthChanged {
			changes <- ev
		}
	})
	p.SetAddrs([]string{up.Addr(), down.Addr()})
	for range 2 {
		ev := <-changes
		name := map[string]string{up.Addr(): "up", down.Addr(): "down"}[ev.Addr]
		if ev.Health == probe.Healthy {
			fmt.Println(name, "is", ev.Health, "after", ev.Successes, "successes")
		} else {
			fmt.Println(name, "is", ev.Health, "after", ev.Failures, "failures:", errors.Is(ev.LastErr, probe.ErrUnexpectedStatus))
		}
	}
	// Unordered output:
	// up is healthy after 2 successes
	// down is unhealthy after 2 failures: true
}

// CheckNow runs a check at once, e.g. before registering an instance.
func ExampleProber_CheckNow() {
	b, err := testbackend.NewHTTP()
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()
	p := probe.New(probe.TCP{}, probe.WithInterval(time.Minute), probe.WithRise(1))
	defer p.Close()
	p.SetAddrs([]string{b.Addr()})

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := p.CheckNow(ctx, b.Addr())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(st.Health, st.LastErr)
	// Output: healthy <nil>
}

func ExampleGRPCHealth() {
	b, err := testbackend.NewGRPC()
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	b.SetServing("orders", true)
	_, err = probe.GRPCHealth{Service: "orders"}.Check(ctx, b.Addr())
	fmt.Println(err == nil)
	b.SetServing("orders", false)
	_, err = probe.GRPCHealth{Service: "orders"}.Check(ctx, b.Addr())
	fmt.Println(errors.Is(err, probe.ErrNotServing))
	// Output:
	// true
	// true
}

// exitTB lets certgen run outside a test.
type exitTB struct{}

func (exitTB) Helper()                      {}
func (exitTB) Fatalf(f string, args ...any) { log.Fatalf(f, args...) }

func ExampleTLSHandshake_Handshake() {
	ca := certgen.NewCA(exitTB{}, "example CA")
	leaf := ca.Server(exitTB{}, []string{"orders.example"}, certgen.ValidFor(30*24*time.Hour))
	b, err := testbackend.NewHTTP(testbackend.WithTLS(&tls.Config{Certificates: []tls.Certificate{leaf.TLSCertificate(exitTB{})}}))
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	check := probe.TLSHandshake{
		Config:      &tls.Config{RootCAs: certgen.Pool(ca)},
		ServerName:  "orders.example",
		MinValidity: 7 * 24 * time.Hour, // fail when the certificate expires within a week
	}
	res, err := check.Handshake(ctx, b.Addr())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(res.Verified, tls.VersionName(res.Version), int(time.Until(res.NotAfter).Round(24*time.Hour)/(24*time.Hour)), "days left")
	// Output: true TLS 1.3 30 days left
}

func ExampleHTTP() {
	b, err := testbackend.NewHTTP(testbackend.WithStatus(503))
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	// Maintenance pages answer 503; count them as alive.
	_, err = probe.HTTP{Path: "/status", Host: "orders.example", StatusMin: 200, StatusMax: 503}.Check(ctx, b.Addr())
	fmt.Println(err)
	_, err = probe.HTTP{Path: "/status"}.Check(ctx, b.Addr())
	fmt.Println(errors.Is(err, probe.ErrUnexpectedStatus))
	// Output:
	// <nil>
	// true
}

// A probe learns the load of a server that reports it (here a test
// backend using loadreport): requests in flight and capacity.
func ExampleHTTP_CheckLoad() {
	b, err := testbackend.NewHTTP(testbackend.WithLoadReport(), testbackend.WithCapacity(4))
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := probe.HTTP{Path: "/healthz"}.CheckLoad(ctx, b.Addr())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("rif", res.Load.RIF, "capacity", res.Load.Capacity, "fresh", res.Load.Age(time.Now()) < time.Second)
	// Output:
	// rif 0 capacity 4 fresh true
}
