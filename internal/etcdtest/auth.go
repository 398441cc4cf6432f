package etcdtest

import (
	"context"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// AddUser creates the user name with password on a cluster started
// WithAuth, and grants it roles (which must exist), as root.
func (c *Cluster) AddUser(t testing.TB, name, password string, roles ...string) {
	t.Helper()
	cli := c.Client(t)
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	if _, err := cli.UserAdd(ctx, name, password); err != nil {
		t.Fatalf("etcdtest: add user %s: %v", name, err)
	}
	for _, r := range roles {
		if _, err := cli.UserGrantRole(ctx, name, r); err != nil {
			t.Fatalf("etcdtest: grant role %s to %s: %v", r, name, err)
		}
	}
}

// UserClient returns a new client connected to every member and logged
// in as name, for tests of what a role may do. It is closed by t.Cleanup.
func (c *Cluster) UserClient(t testing.TB, name, password string) *clientv3.Client {
	t.Helper()
	cfg := c.ClientConfig()
	cfg.Username, cfg.Password = name, password
	cli, err := clientv3.New(cfg)
	if err != nil {
		t.Fatalf("etcdtest: client for user %s: %v", name, err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}
