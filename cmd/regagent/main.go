package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sigs
		cancel() // the first signal drains
		s := <-sigs
		fmt.Fprintf(os.Stderr, "regagent: second signal (%v): exiting at once; the instance expires with its lease\n", s)
		os.Exit(exitFailure)
	}()
	os.Exit(run(ctx, os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr))
}
