package main

import (
	"context"
	"fmt"
	"os"
)

// A configuration problem exits 2 before anything starts, with one line
// per problem, each naming the flag.
func Example_usageErrors() {
	noEnv := func(string) (string, bool) { return "", false }
	code := run(context.Background(),
		[]string{"--service", "api", "--weight", "0", "--check", "icmp"},
		noEnv, os.Stdout, os.Stdout)
	fmt.Println("exit status", code)
	// Output:
	// regagent: --addr is required
	// regagent: --weight 0 is out of range 1..10000
	// regagent: --check "icmp" is not one of http, https, tcp, grpc, tls
	// Run 'regagent -h' for usage.
	// exit status 2
}

// The environment fills what the command line leaves unset, and the config
// file what both leave unset.
func Example_precedence() {
	env := map[string]string{
		"REGAGENT_CONFIG": "testdata/regagent.conf", // service api, zone eu-west-1a, weight 2, ...
		"REGAGENT_ZONE":   "eu-west-1b",
	}
	r, _, _, err := parseArgs([]string{"--weight", "5"}, func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	cfg, err := r.validate()
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(cfg.instance.Service, cfg.instance.Zone, cfg.instance.Weight)
	// Output: api eu-west-1b 5
}
