package cliutil

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Cause names the kind of an etcd failure, for tests and for the "cause"
// of the JSON error document.
type Cause string

// The causes CheckEtcd and DiagnoseEtcd name.
const (
	// CauseUnreachable: no endpoint accepted a connection in time.
	CauseUnreachable Cause = "unreachable"
	// CauseNoAnswer: etcd accepted the connection but did not answer a
	// request in time (no leader, overloaded).
	CauseNoAnswer Cause = "no_answer"
	// CauseTLSUnknownAuthority: etcd's certificate is not signed by a CA
	// of --etcd-cacert (or of the system roots without it).
	CauseTLSUnknownAuthority Cause = "tls_unknown_authority"
	// CauseTLSServerCertificate: etcd's certificate is signed by a
	// trusted CA but not valid: another name, expired.
	CauseTLSServerCertificate Cause = "tls_server_certificate"
	// CauseTLSClientCertificate: etcd refused the client certificate, or
	// wanted one and got none.
	CauseTLSClientCertificate Cause = "tls_client_certificate"
	// CauseTLSExpected: etcd speaks TLS and the client plain HTTP.
	CauseTLSExpected Cause = "tls_expected"
	// CauseTLSUnsupported: the client speaks TLS and etcd plain HTTP.
	CauseTLSUnsupported Cause = "tls_unsupported"
	// CauseAuthFailed: wrong user name or password.
	CauseAuthFailed Cause = "auth_failed"
	// CauseAuthRequired: etcd has authentication on and no user was
	// given.
	CauseAuthRequired Cause = "auth_required"
	// CausePermissionDenied: the user's roles do not allow the request.
	CausePermissionDenied Cause = "permission_denied"
	// CauseOther: any other error from etcd.
	CauseOther Cause = "error"
)

// EtcdError is an etcd failure with its cause named and the fix said.
type EtcdError struct {
	Cause Cause
	// Msg says what went wrong, starting with "etcd".
	Msg string
	// Fix says what to do about it.
	Fix string
	// Err is the underlying error.
	Err error
}

func (e *EtcdError) Error() string {
	if e.Fix == "" {
		return e.Msg
	}
	return e.Msg + "; " + e.Fix
}

func (e *EtcdError) Unwrap() error { return e.Err }

// Access is what a command needs of etcd: to read (and with Write, to
// write) Key, or every key under it with Prefix. The start-up check tries
// exactly that, so that a missing permission is found at once and named.
type Access struct {
	Key    string
	Prefix bool
	Write  bool
	// GrantPrefix and Role are named by the fix of a permission denied:
	// the prefix a role must cover, and the role that does
	// (smartroute-registrant, smartroute-reader...).
	GrantPrefix string
	Role        string
}

// CheckEtcd checks at start-up, within cfg.DialTimeout, that etcd can be
// used as cfg says and as acc needs, and returns a client for it. When it
// cannot, the error is an *EtcdError naming the cause and the fix:
//
//  1. it connects to every endpoint over plain HTTP or TLS, as cfg says,
//     and asks for /version: this finds an unreachable etcd (with every
//     endpoint's reason), TLS against a plain server and the reverse, an
//     unknown certificate authority, a refused client certificate;
//  2. it creates the client, which authenticates: a wrong user or
//     password;
//  3. it makes acc's request (a count-only read; for writes a transaction
//     whose condition never holds, which etcd checks for permission but
//     never applies): no user given, a permission denied, naming the key
//     and the user's roles.
//
// A refusal is reported as soon as it is known; only an endpoint that
// does not answer at all makes it wait the whole timeout.
func CheckEtcd(ctx context.Context, cfg clientv3.Config, acc Access) (*clientv3.Client, error) {
	timeout := cfg.DialTimeout
	if timeout <= 0 {
		timeout = DefaultEtcdDialTimeout
	}
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := probeTransport(ctx, cfg, timeout); err != nil {
		if parent.Err() != nil {
			return nil, parent.Err()
		}
		return nil, err
	}
	ccfg := cfg
	if dl, ok := ctx.Deadline(); ok {
		ccfg.DialTimeout = max(time.Until(dl), time.Millisecond)
	}
	cli, err := clientv3.New(ccfg)
	if err != nil {
		if parent.Err() != nil {
			return nil, parent.Err()
		}
		return nil, DiagnoseEtcd(err, cfg, acc, timeout)
	}
	if err := checkAccess(ctx, cli, acc); err != nil {
		defer cli.Close()
		if parent.Err() != nil {
			return nil, parent.Err()
		}
		return nil, DiagnoseEtcdWith(parent, cli, err, cfg, acc, timeout)
	}
	return cli, nil
}

// checkAccess makes acc's request.
func checkAccess(ctx context.Context, cli *clientv3.Client, acc Access) error {
	if acc.Key == "" {
		_, err := cli.AuthStatus(ctx)
		return err
	}
	if acc.Write {
		// etcd checks the permission of both branches of a transaction
		// before it evaluates the condition; a key's create revision is
		// never -1, so nothing is written.
		var put clientv3.Op
		if acc.Prefix {
			put = clientv3.OpPut(acc.Key, "", clientv3.WithPrevKV())
		} else {
			put = clientv3.OpPut(acc.Key, "")
		}
		_, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(acc.Key), "=", -1)).Then(put).Commit()
		if err != nil || !acc.Prefix {
			return err
		}
	}
	opts := []clientv3.OpOption{clientv3.WithCountOnly()}
	if acc.Prefix {
		opts = append(opts, clientv3.WithPrefix())
	}
	_, err := cli.Get(ctx, acc.Key, opts...)
	return err
}

// endpointResult is one endpoint's answer to the transport probe.
type endpointResult struct {
	ep  string
	err error
}

// probeTransport asks every endpoint for /version over the transport cfg
// describes. It returns nil as soon as one answers (any HTTP answer: the
// transport works), else the most telling failure.
func probeTransport(ctx context.Context, cfg clientv3.Config, timeout time.Duration) error {
	var eps []string
	for _, ep := range cfg.Endpoints {
		u, err := url.Parse(ep)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
			return nil // unix sockets and the like: the client will say
		}
		eps = append(eps, ep)
	}
	if len(eps) == 0 {
		return nil
	}
	results := make(chan endpointResult, len(eps))
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for _, ep := range eps {
		go func() { results <- endpointResult{ep, probeEndpoint(pctx, cfg.TLS, ep)} }()
	}
	var failed []endpointResult
	for range eps {
		r := <-results
		if r.err == nil {
			cancel()
			// The others end at once; their results are not waited
			// for (the channel has room for them).
			return nil
		}
		failed = append(failed, r)
	}
	return transportError(failed, cfg, timeout)
}

// probeEndpoint makes one GET /version to ep.
func probeEndpoint(ctx context.Context, tc *tls.Config, ep string) error {
	u, _ := url.Parse(ep)
	tr := &http.Transport{
		Proxy:             nil,
		DisableKeepAlives: true,
		DialContext:       (&net.Dialer{}).DialContext,
	}
	if tc != nil {
		tr.TLSClientConfig = tc.Clone()
	} else if u.Scheme == "https" {
		tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if tr.TLSClientConfig != nil && tr.TLSClientConfig.ServerName == "" {
		tr.TLSClientConfig.ServerName = u.Hostname()
	}
	defer tr.CloseIdleConnections()
	// clientv3 speaks TLS to every endpoint when it has a TLS config,
	// whatever the scheme: so does the probe.
	scheme := u.Scheme
	if tc != nil {
		scheme = "https"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+u.Host+"/version", nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		if isHangUp(err) {
			// etcd serves gRPC and HTTP on one port and hangs up on a
			// protocol it does not expect: try the other one to tell a
			// TLS mismatch from a server that is going away.
			if tr.TLSClientConfig != nil && speaksPlainHTTP(ctx, u.Host) {
				return errTLSToPlain
			}
			if tr.TLSClientConfig == nil && speaksTLS(ctx, u.Host) {
				return errPlainToTLS
			}
		}
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode == http.StatusBadRequest && strings.Contains(string(body), "HTTPS") {
		return errPlainToTLS
	}
	return nil
}

// The protocol mismatches, found by trying the other protocol.
var (
	errPlainToTLS = errors.New("plain HTTP to a TLS server")
	errTLSToPlain = errors.New("TLS to a plain HTTP server")
)

// isHangUp reports whether err is the server closing the connection
// without an answer.
func isHangUp(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)
}

// speaksPlainHTTP reports whether host answers a plain HTTP GET /version.
func speaksPlainHTTP(ctx context.Context, host string) bool {
	tr := &http.Transport{Proxy: nil, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+host+"/version", nil)
	if err != nil {
		return false
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return true
}

// speaksTLS reports whether host answers a TLS handshake. It trusts no
// certificate: a server that sends one (and so fails verification) speaks
// TLS, and that is all it tells.
func speaksTLS(ctx context.Context, host string) bool {
	d := tls.Dialer{Config: &tls.Config{RootCAs: x509.NewCertPool(), MinVersion: tls.VersionTLS12}}
	conn, err := d.DialContext(ctx, "tcp", host)
	if err == nil {
		conn.Close()
		return true
	}
	var verr *tls.CertificateVerificationError
	// A server that wants a client certificate may also refuse the
	// handshake with an alert: that is TLS too.
	return errors.As(err, &verr) || strings.Contains(err.Error(), "remote error: tls:")
}

// transportError turns the endpoints' failures into one EtcdError: a TLS
// problem (the same on every endpoint, typically) before unreachable.
func transportError(failed []endpointResult, cfg clientv3.Config, timeout time.Duration) error {
	var unreachable []string
	for _, r := range failed {
		if e := classifyTransport(r.ep, r.err, cfg); e != nil {
			return e
		}
		unreachable = append(unreachable, fmt.Sprintf("%s: %s", r.ep, shortNetError(r.err)))
	}
	return &EtcdError{
		Cause: CauseUnreachable,
		Msg: fmt.Sprintf("etcd unreachable: no answer from %s within %v (%s)",
			strings.Join(cfg.Endpoints, ", "), timeout, strings.Join(unreachable, "; ")),
		Fix: "is etcd running there? check --etcd-endpoints (and --etcd-dial-timeout for a slow network)",
		Err: failed[0].err,
	}
}

// classifyTransport names a TLS failure of ep, or returns nil for a
// network failure (unreachable).
func classifyTransport(ep string, err error, cfg clientv3.Config) *EtcdError {
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	var invalid x509.CertificateInvalidError
	var rec tls.RecordHeaderError
	msg := err.Error()
	switch {
	case errors.Is(err, errPlainToTLS):
		return &EtcdError{Cause: CauseTLSExpected, Err: err,
			Msg: fmt.Sprintf("etcd at %s expects TLS and the client spoke plain HTTP", ep),
			Fix: "use https:// endpoints and --etcd-cacert with etcd's CA (and --etcd-cert, --etcd-key if etcd asks for client certificates)"}
	case errors.Is(err, errTLSToPlain) || errors.As(err, &rec):
		return &EtcdError{Cause: CauseTLSUnsupported, Err: err,
			Msg: fmt.Sprintf("etcd at %s speaks plain HTTP, not TLS", strings.Replace(ep, "https://", "http://", 1)),
			Fix: "use http:// endpoints without --etcd-cacert, --etcd-cert and --etcd-key, or serve etcd's client port over TLS (--cert-file, --key-file)"}
	case errors.As(err, &unknown):
		issuer := ""
		if unknown.Cert != nil {
			issuer = fmt.Sprintf(" (issuer %q)", unknown.Cert.Issuer.String())
		}
		return &EtcdError{Cause: CauseTLSUnknownAuthority, Err: err,
			Msg: fmt.Sprintf("etcd's certificate at %s is signed by an unknown authority%s", ep, issuer),
			Fix: "give --etcd-cacert the CA bundle that signed etcd's server certificate (etcd's --trusted-ca-file, typically)"}
	case errors.As(err, &host):
		return &EtcdError{Cause: CauseTLSServerCertificate, Err: err,
			Msg: fmt.Sprintf("etcd's certificate at %s is not valid for that name: %v", ep, host.Error()),
			Fix: "use an endpoint name the certificate lists, or reissue etcd's certificate with it"}
	case errors.As(err, &invalid):
		return &EtcdError{Cause: CauseTLSServerCertificate, Err: err,
			Msg: fmt.Sprintf("etcd's certificate at %s is not valid: %v", ep, invalid.Error()),
			Fix: "renew etcd's server certificate"}
	case strings.Contains(msg, "remote error: tls:"):
		alert := msg[strings.Index(msg, "remote error: tls:")+len("remote error: tls: "):]
		e := &EtcdError{Cause: CauseTLSClientCertificate, Err: err}
		if cfg.TLS == nil || (cfg.TLS.GetClientCertificate == nil && len(cfg.TLS.Certificates) == 0) {
			e.Msg = fmt.Sprintf("etcd at %s requires a client certificate and none was given (%s)", ep, alert)
			e.Fix = "give --etcd-cert and --etcd-key, a certificate signed by a CA etcd trusts (its --trusted-ca-file)"
		} else {
			e.Msg = fmt.Sprintf("etcd at %s refused the client certificate (%s)", ep, alert)
			e.Fix = "--etcd-cert must be signed by a CA etcd trusts (its --trusted-ca-file), be valid now and allow client authentication"
		}
		return e
	}
	return nil
}

// shortNetError is the gist of a network error: "connection refused",
// "i/o timeout".
func shortNetError(err error) string {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return "no answer"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "no route to host"
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return dnsErr.Error()
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}

// DiagnoseEtcd names the cause of an error etcd's client returned, and the
// fix, as an *EtcdError; an error it does not recognise is returned as it
// is. timeout is how long the request was given, for "did not answer".
func DiagnoseEtcd(err error, cfg clientv3.Config, acc Access, timeout time.Duration) error {
	return DiagnoseEtcdWith(context.Background(), nil, err, cfg, acc, timeout)
}

// DiagnoseEtcdWith is DiagnoseEtcd with a client (or nil), which it uses
// to look up the user's roles for a permission denied.
func DiagnoseEtcdWith(ctx context.Context, cli *clientv3.Client, err error, cfg clientv3.Config, acc Access, timeout time.Duration) error {
	if err == nil {
		return nil
	}
	var already *EtcdError
	if errors.As(err, &already) {
		return err
	}
	eps := strings.Join(cfg.Endpoints, ", ")
	user := cfg.Username
	switch {
	case errors.Is(err, rpctypes.ErrAuthFailed):
		return &EtcdError{Cause: CauseAuthFailed, Err: err,
			Msg: fmt.Sprintf("etcd refused user %q: authentication failed, wrong user name or password", user),
			Fix: "check --etcd-user and the password (--etcd-password-file, or the ETCD_PASSWORD environment variable of the command)"}
	case errors.Is(err, rpctypes.ErrUserEmpty), errors.Is(err, rpctypes.ErrInvalidAuthToken) && user == "":
		return &EtcdError{Cause: CauseAuthRequired, Err: err,
			Msg: "etcd has authentication on and the request named no user",
			Fix: "give --etcd-user with --etcd-password-file, or a client certificate (--etcd-cert) whose common name is an etcd user"}
	case errors.Is(err, rpctypes.ErrPermissionDenied) || status.Code(err) == codes.PermissionDenied:
		return permissionError(ctx, cli, err, user, acc)
	case errors.Is(err, context.DeadlineExceeded) || status.Code(err) == codes.DeadlineExceeded:
		return &EtcdError{Cause: CauseNoAnswer, Err: err,
			Msg: fmt.Sprintf("etcd at %s accepted the connection but did not answer within %v", eps, timeout),
			Fix: "is the cluster healthy, with a leader? (etcdctl endpoint status); or raise --etcd-dial-timeout"}
	case errors.Is(err, rpctypes.ErrNoLeader) || errors.Is(err, rpctypes.ErrGRPCNoLeader):
		return &EtcdError{Cause: CauseNoAnswer, Err: err,
			Msg: fmt.Sprintf("etcd at %s has no leader", eps),
			Fix: "a majority of the cluster's members must run and reach each other (etcdctl endpoint status)"}
	}
	return err
}

// permissionError names the key, the user and its roles.
func permissionError(ctx context.Context, cli *clientv3.Client, err error, user string, acc Access) error {
	what := "read"
	if acc.Write {
		what = "write"
	}
	key := acc.Key
	if acc.Prefix {
		key += "*"
	}
	who := "the etcd user of the client certificate (its common name)"
	if user != "" {
		who = fmt.Sprintf("etcd user %q", user)
		if cli != nil {
			lctx, cancel := context.WithTimeout(ctx, time.Second)
			resp, gerr := cli.UserGet(lctx, user)
			cancel()
			if gerr == nil {
				roles := "none"
				if len(resp.Roles) > 0 {
					roles = strings.Join(resp.Roles, ", ")
				}
				who += " (roles: " + roles + ")"
			}
		}
	}
	if key == "" {
		key = "the key space"
	}
	e := &EtcdError{Cause: CausePermissionDenied, Err: err,
		Msg: fmt.Sprintf("%s may not %s %s: permission denied", who, what, key)}
	perm := "read"
	if acc.Write {
		perm = "readwrite"
	}
	switch {
	case acc.GrantPrefix != "" && acc.Role != "":
		e.Fix = fmt.Sprintf("grant the user a role with %s on %s: the role %s ('lbprobe etcd roles' creates it), then 'etcdctl user grant-role %s %s'",
			perm, acc.GrantPrefix, acc.Role, orUser(user), acc.Role)
	case acc.GrantPrefix != "":
		e.Fix = fmt.Sprintf("grant the user a role with %s on %s (etcdctl role grant-permission ROLE --prefix=true %s %s)", perm, acc.GrantPrefix, perm, acc.GrantPrefix)
	default:
		e.Fix = "grant the user a role that allows it (etcdctl role grant-permission)"
	}
	return e
}

func orUser(u string) string {
	if u == "" {
		return "USER"
	}
	return u
}
