package main

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// etcdServer is a single-node etcd embedded in the process, keeping its data
// in dir.
type etcdServer struct {
	e        *embed.Etcd
	endpoint string // the client URL, http://127.0.0.1:port
}

// startEtcd starts a single-node etcd whose data lives in dir, on free
// loopback ports. It favours speed over durability (no fsync): this is a
// demo, not a database.
func startEtcd(dir string) (*etcdServer, error) {
	var lastErr error
	// The ports are found free and released before etcd binds them, so
	// another process may take one in between: try again on new ports.
	for range 5 {
		s, err := tryStartEtcd(dir)
		if err == nil {
			return s, nil
		}
		lastErr = err
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	return nil, fmt.Errorf("start etcd: %w", lastErr)
}

func tryStartEtcd(dir string) (*etcdServer, error) {
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	clientURL := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", ports[0])}
	peerURL := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", ports[1])}

	cfg := embed.NewConfig()
	cfg.Name = "quickstart"
	cfg.Dir = dir
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	cfg.LogLevel = "error"
	cfg.UnsafeNoFsync = true
	cfg.ListenClientUrls = []url.URL{clientURL}
	cfg.AdvertiseClientUrls = []url.URL{clientURL}
	cfg.ListenPeerUrls = []url.URL{peerURL}
	cfg.AdvertisePeerUrls = []url.URL{peerURL}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, err
	}
	select {
	case <-e.Server.ReadyNotify():
		return &etcdServer{e: e, endpoint: clientURL.String()}, nil
	case err := <-e.Err():
		e.Close()
		return nil, err
	case <-time.After(20 * time.Second):
		e.Close()
		return nil, errors.New("etcd not ready after 20s")
	}
}

// client returns a new etcd client. Each backend gets its own, as separate
// processes would have, so that killing one backend can also end its
// lease keepalives.
func (s *etcdServer) client() (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{
		Endpoints:   []string{s.endpoint},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
}

// Close stops etcd and waits until it has stopped.
func (s *etcdServer) Close() {
	s.e.Close()
	<-s.e.Server.StopNotify()
}

// freePorts finds n distinct free TCP ports on 127.0.0.1.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
