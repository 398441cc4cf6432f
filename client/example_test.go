package client_test

import (
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/smartroute/smartroute/client"
	"github.com/smartroute/smartroute/overload"
	"github.com/smartroute/smartroute/resolver"
)

// A Client is the Transport of an http.Client; the URL's host names the
// service, the client chooses the endpoint.
func ExampleNew() {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from the backend, Host %s", r.Host)
	}))
	defer backend.Close()
	addr := strings.TrimPrefix(backend.URL, "http://")

	c, err := client.New("static:///"+addr, client.WithPolicy(client.LeastLatency))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	hc := &http.Client{Transport: c, Timeout: 5 * time.Second}

	resp, err := hc.Get("http://api/hello")
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(string(body))
	// Output: hello from the backend, Host api
}

// Pick tells where the next request would go, and why.
func ExampleClient_Pick() {
	backend := httptest.NewServer(http.NotFoundHandler())
	defer backend.Close()
	addr := strings.TrimPrefix(backend.URL, "http://")

	r, _ := resolver.NewStatic(addr)
	c, err := client.NewFromResolver("api", r, client.WithPolicy(client.RoundRobin), client.WithoutProbe())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	// Requests wait for the resolver's first answer; Pick does not.
	if resp, err := c.RoundTrip(httptest.NewRequest(http.MethodGet, "http://api/", nil)); err == nil {
		resp.Body.Close()
	}

	ch, err := c.Pick(nil)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(ch.Addr == addr, ch.Reason)
	// Output: true next in turn among 1 endpoint
}

// WithOverload protects a service and its callers: here a service breaker
// that opens after three failed requests, and a fallback that answers the
// requests it refuses. Endpoint breakers and limits, throttling and the
// gRPC service config are in README, "Overload".
func ExampleWithOverload() {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "broken", http.StatusInternalServerError)
	}))
	defer backend.Close()
	addr := strings.TrimPrefix(backend.URL, "http://")

	r, _ := resolver.NewStatic(addr)
	c, err := client.NewFromResolver("payments", r, client.WithoutProbe(),
		client.WithOverload(overload.WithBreakers(overload.BreakerRule{Strategy: overload.ErrorCount, Threshold: 3, MinRequests: 3})),
		client.WithOverloadFallback(func(req *http.Request, err error) (*http.Response, error) {
			fmt.Println("fallback, breaker open:", errors.Is(err, overload.ErrBreakerOpen))
			return &http.Response{StatusCode: http.StatusOK, Body: io.NopCloser(strings.NewReader("cached")), Request: req}, nil
		}))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	hc := &http.Client{Transport: c, Timeout: 5 * time.Second}
	for range 4 {
		resp, err := hc.Get("http://payments/")
		if err != nil {
			log.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Println(resp.StatusCode, strings.TrimSpace(string(body)))
	}
	fmt.Println("service breaker:", c.Overload().Breakers[0].State)
	// Output:
	// 500 broken
	// 500 broken
	// 500 broken
	// fallback, breaker open: true
	// 200 cached
	// service breaker: open
}

// The smartroute balancer for gRPC: register it once, then select it in
// the service config. With an etcd client, use resolver.NewGRPCBuilder
// and an etcd:///service target.
func ExampleRegisterGRPCBalancer() {
	client.RegisterGRPCBalancer()
	conn, err := grpc.NewClient("dns:///localhost:50051",
		grpc.WithDefaultServiceConfig(client.GRPCServiceConfig(client.LeastLatency)),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	fmt.Println(client.GRPCServiceConfig(client.P2C))
	// Output: {"loadBalancingConfig":[{"smartroute":{"policy":"p2c"}}]}
}
