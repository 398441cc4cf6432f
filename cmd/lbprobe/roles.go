package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"go.etcd.io/etcd/api/v3/authpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/smartroute/smartroute/internal/cliutil"
	"github.com/smartroute/smartroute/mtls"
	"github.com/smartroute/smartroute/registry"
)

// defaultRolePrefix names the roles: smartroute-registrant, …
const defaultRolePrefix = "smartroute-"

// etcdRole is one least-privilege role of the smartroute actors.
type etcdRole struct {
	Name  string     `json:"name"`
	Who   string     `json:"who"`
	Perms []etcdPerm `json:"permissions"`
}

// etcdPerm is a permission on every key under a prefix.
type etcdPerm struct {
	Prefix string `json:"prefix"`
	Type   string `json:"type"` // read, write or readwrite, as etcdctl names them
}

// leastPrivilegeRoles are the roles of the three actors, for the given
// prefixes (each with its trailing '/', so "/services" never covers
// "/services-old"):
//
//   - registrant: read-write the registry, nothing else (regagent,
//     registry.Register);
//   - reader: read the registry and the certificate store (resolvers,
//     mtls.Store, lbprobe's read-only commands);
//   - certificate admin: read-write the certificate store (lbprobe certs
//     put, revoke, reseal; mtls.Publish, PublishCA, Revoke).
//
// A service that registers and serves mTLS gets registrant and reader.
func leastPrivilegeRoles(rolePrefix, servicesPrefix, certsPrefix string) []etcdRole {
	svc := strings.TrimSuffix(servicesPrefix, "/") + "/"
	crt := strings.TrimSuffix(certsPrefix, "/") + "/"
	return []etcdRole{
		{Name: rolePrefix + "registrant", Who: "services that register themselves: regagent, registry.Register",
			Perms: []etcdPerm{{svc, "readwrite"}}},
		{Name: rolePrefix + "reader", Who: "clients and servers: resolvers, mtls.Store, lbprobe endpoints/watch/pick/certs list",
			Perms: []etcdPerm{{svc, "read"}, {crt, "read"}}},
		{Name: rolePrefix + "cert-admin", Who: "whoever publishes certificates: lbprobe certs put/revoke/reseal, mtls.Publish",
			Perms: []etcdPerm{{crt, "readwrite"}}},
	}
}

var permTypes = map[string]clientv3.PermissionType{
	"read":      clientv3.PermissionType(authpb.READ),
	"write":     clientv3.PermissionType(authpb.WRITE),
	"readwrite": clientv3.PermissionType(authpb.READWRITE),
}

// rolesCmd is lbprobe etcd roles.
type rolesCmd struct {
	app            *app
	etcd           etcdFlags
	servicesPrefix string
	certsPrefix    string
	rolePrefix     string
	dryRun         bool
	format         cliutil.Format
}

func (c *rolesCmd) spec() subcommand {
	return subcommand{
		name:  "roles",
		short: "create the least-privilege etcd roles: registrant, reader, certificate admin",
		long: `Creates (or brings up to date) three etcd roles, so that each actor holds
only what it needs and write access to the registry cannot mint trusted
identities:

  smartroute-registrant  readwrite /services/            regagent, registry.Register
  smartroute-reader      read /services/, read /certs/   resolvers, mtls.Store, lbprobe's read-only commands
  smartroute-cert-admin  readwrite /certs/               lbprobe certs put/revoke/reseal, mtls.Publish

A role that exists already gets exactly these permissions (others are
revoked). Run it as root (--etcd-user root); create the users and grant them
the roles with etcdctl (user add, user grant-role). A service that registers
and serves mTLS needs registrant and reader. With --dry-run it connects to
nothing and prints the etcdctl commands that do the same.`,
		flags: func(fs *flag.FlagSet) {
			c.etcd.register(fs)
			fs.StringVar(&c.servicesPrefix, "etcd-prefix", registry.DefaultPrefix, "registry prefix the registrant writes and the reader reads")
			fs.StringVar(&c.certsPrefix, "certs-prefix", mtls.DefaultPrefix, "certificate store prefix the reader reads and the certificate admin writes")
			fs.StringVar(&c.rolePrefix, "role-prefix", defaultRolePrefix, "prefix of the role names")
			fs.BoolVar(&c.dryRun, "dry-run", false, "print the etcdctl commands instead of changing etcd")
			cliutil.RegisterFormat(fs, &c.format)
		},
		exec:   c.exec,
		format: &c.format,
	}
}

func (c *rolesCmd) exec(ctx context.Context, args []string) (int, error) {
	if len(args) > 0 {
		return 0, usagef("roles takes no arguments, got %q", args)
	}
	for _, p := range []struct{ flag, v string }{{"etcd-prefix", c.servicesPrefix}, {"certs-prefix", c.certsPrefix}} {
		if strings.Trim(p.v, "/") == "" {
			return 0, usagef("--%s %q: a role over the whole key space is not least privilege", p.flag, p.v)
		}
	}
	roles := leastPrivilegeRoles(c.rolePrefix, c.servicesPrefix, c.certsPrefix)
	a := c.app
	if c.dryRun {
		if c.format.IsJSON() {
			if err := writeJSON(a.stdout, roles); err != nil {
				return a.fail(exitFailure, "write: %v", err), nil
			}
			return exitOK, nil
		}
		writeRolesScript(a.stdout, roles)
		return exitOK, nil
	}
	cli, err := c.etcd.newClient(ctx, cliutil.Access{})
	if err != nil {
		return a.failOrUsage(err)
	}
	defer cli.Close()
	wctx, cancel := context.WithTimeout(ctx, 2*c.etcd.dialTimeout())
	defer cancel()
	for _, r := range roles {
		if err := ensureRole(wctx, cli, r); err != nil {
			if errors.Is(err, rpctypes.ErrPermissionDenied) {
				return a.failErr(exitEtcd, &cliutil.EtcdError{Cause: cliutil.CausePermissionDenied, Err: err,
					Msg: fmt.Sprintf("etcd user %q may not create roles", c.etcd.User),
					Fix: "run it as root (--etcd-user root), or print the etcdctl commands with --dry-run"}), nil
			}
			derr := c.etcd.diagnose(err, cliutil.Access{}, c.etcd.dialTimeout())
			return a.failErr(exitCodeOf(derr, exitNone), fmt.Errorf("role %s: %w", r.Name, derr)), nil
		}
	}
	if c.format.IsJSON() {
		if err := writeJSON(a.stdout, roles); err != nil {
			return a.fail(exitFailure, "write: %v", err), nil
		}
		return exitOK, nil
	}
	tw := newTable(a.stdout)
	row(tw, "ROLE", "PERMISSIONS", "FOR")
	for _, r := range roles {
		var ps []string
		for _, p := range r.Perms {
			ps = append(ps, p.Type+" "+p.Prefix)
		}
		row(tw, r.Name, strings.Join(ps, ", "), r.Who)
	}
	if err := tw.Flush(); err != nil {
		return a.fail(exitFailure, "write: %v", err), nil
	}
	return exitOK, nil
}

// ensureRole creates r if needed and leaves it with exactly r's
// permissions.
func ensureRole(ctx context.Context, cli *clientv3.Client, r etcdRole) error {
	if _, err := cli.RoleAdd(ctx, r.Name); err != nil && !errors.Is(err, rpctypes.ErrRoleAlreadyExist) {
		return fmt.Errorf("add: %w", err)
	}
	got, err := cli.RoleGet(ctx, r.Name)
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	want := map[[2]string]string{}
	for _, p := range r.Perms {
		want[[2]string{p.Prefix, clientv3.GetPrefixRangeEnd(p.Prefix)}] = p.Type
	}
	for _, p := range got.Perm {
		k := [2]string{string(p.Key), string(p.RangeEnd)}
		if t, ok := want[k]; ok && permTypes[t] == clientv3.PermissionType(p.PermType) {
			delete(want, k)
			continue
		}
		if _, err := cli.RoleRevokePermission(ctx, r.Name, k[0], k[1]); err != nil {
			return fmt.Errorf("revoke %s: %w", k[0], err)
		}
	}
	for _, k := range slices.SortedFunc(maps.Keys(want), func(a, b [2]string) int { return strings.Compare(a[0], b[0]) }) {
		if _, err := cli.RoleGrantPermission(ctx, r.Name, k[0], k[1], permTypes[want[k]]); err != nil {
			return fmt.Errorf("grant %s %s: %w", want[k], k[0], err)
		}
	}
	return nil
}

// writeRolesScript prints the etcdctl commands that create the roles.
func writeRolesScript(w io.Writer, roles []etcdRole) {
	for _, r := range roles {
		fmt.Fprintf(w, "# %s: %s\n", r.Name, r.Who)
		fmt.Fprintf(w, "etcdctl role add %s\n", r.Name)
		for _, p := range r.Perms {
			fmt.Fprintf(w, "etcdctl role grant-permission %s --prefix=true %s %s\n", r.Name, p.Type, p.Prefix)
		}
	}
}
