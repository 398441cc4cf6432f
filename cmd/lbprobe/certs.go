package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/smartroute/smartroute/mtls"
)

// certsFlags are the flags every certs command takes.
type certsFlags struct {
	etcd       etcdFlags
	prefix     string
	kekFile    string
	kekEnv     string
	kekID      string
	allowPlain bool
	json       bool
}

func (f *certsFlags) register(fs *flag.FlagSet) {
	f.etcd.register(fs)
	fs.StringVar(&f.prefix, "certs-prefix", mtls.DefaultPrefix, "etcd key prefix of the certificate store")
	fs.StringVar(&f.kekFile, "kek-file", "", "file holding the key-encryption key that seals private keys (32 bytes raw, hex or base64)")
	fs.StringVar(&f.kekEnv, "kek-env", "", "name of the environment variable holding the key-encryption key (instead of --kek-file)")
	fs.StringVar(&f.kekID, "kek-id", "", "ID of the key-encryption key, as written in the envelopes it seals (with --kek-file or --kek-env)")
	fs.BoolVar(&f.allowPlain, "allow-plaintext-keys", false, "accept (and, for put without a KEK, write) private keys stored as plain PEM")
	fs.BoolVar(&f.json, "json", false, "write JSON instead of a table")
}

// keyring returns the keyring the KEK flags name, or nil when they name
// none. Its errors are usage errors.
func (f *certsFlags) keyring() (*mtls.Keyring, error) {
	if f.kekFile == "" && f.kekEnv == "" {
		if f.kekID != "" {
			return nil, usagef("--kek-id needs --kek-file or --kek-env")
		}
		return nil, nil
	}
	if f.kekFile != "" && f.kekEnv != "" {
		return nil, usagef("--kek-file and --kek-env: give one")
	}
	if f.kekID == "" {
		return nil, usagef("--kek-id is required with --kek-file or --kek-env (the ID the envelopes name)")
	}
	var kek mtls.KEK
	var err error
	if f.kekFile != "" {
		kek, err = mtls.LoadKEKFile(f.kekID, f.kekFile)
	} else {
		kek, err = mtls.LoadKEKEnv(f.kekID, f.kekEnv)
	}
	if err != nil {
		return nil, usagef("key-encryption key: %v", stripPkg(err))
	}
	kr, err := mtls.NewKeyring(kek)
	if err != nil {
		return nil, usagef("key-encryption key: %v", stripPkg(err))
	}
	return kr, nil
}

// certsCmd holds the certs subcommands.
type certsCmd struct {
	app    *app
	list   certsFlags
	verify certsFlags
	put    certsFlags

	putCert, putKey, putCA string
}

func (c *certsCmd) listSpec() subcommand {
	return subcommand{
		name:  "list",
		short: "list the CA bundle and the identities under /certs, each checked with crypto/x509",
		long: `Reads the certificate store's keys from etcd and prints one row per CA
certificate (NAME "ca") and per identity: subject, SANs, issuer, expiry,
days left, how the private key is stored (sealed with which KEK, or plain),
the etcd revision, and a status: "ok", or the reason the identity would be
refused (expired, not_yet_valid, untrusted, key_mismatch, incomplete,
malformed, plain_key, unseal, not_ca, invalid_name) and why. The key is
opened and matched against its certificate only when a KEK is given
(--kek-file or --kek-env, with --kek-id); without one the key column says
"not opened".`,
		flags: c.list.register,
		exec:  c.execList,
	}
}

func (c *certsCmd) verifySpec() subcommand {
	return subcommand{
		name:  "verify",
		args:  "[NAME...]",
		short: "load identities exactly as a service's mtls.Store does, and say whether it accepts them",
		long: `Loads the certificate store with the mtls package's Store, with the KEK
given (--kek-file or --kek-env, with --kek-id; required unless every key is
plain PEM and --allow-plaintext-keys is set), and reports, for each NAME
(default: every identity stored), whether the Store accepts it: "ok", or
the Store's reason and error. This is the verdict services will reach.`,
		flags: c.verify.register,
		exec:  c.execVerify,
	}
}

func (c *certsCmd) putSpec() subcommand {
	return subcommand{
		name:  "put",
		args:  "[NAME]",
		short: "seal and upload a certificate and key for identity NAME, and/or a CA bundle",
		long: `With --ca, publishes the CA bundle first (mtls.PublishCA: it refuses a
bundle that would orphan an identity in use). With NAME, --cert and --key,
validates the pair against the CA bundle in etcd and writes it in one
transaction with the private key sealed by the KEK (mtls.Publish).
Without a KEK the key is written as plain PEM only with
--allow-plaintext-keys.`,
		noEnv: []string{"cert", "key", "ca"},
		flags: func(fs *flag.FlagSet) {
			c.put.register(fs)
			fs.StringVar(&c.putCert, "cert", "", "PEM certificate chain of NAME, leaf first")
			fs.StringVar(&c.putKey, "key", "", "PEM private key of --cert")
			fs.StringVar(&c.putCA, "ca", "", "PEM CA bundle to publish (before the identity, if any)")
		},
		exec: c.execPut,
	}
}

// certRow is one row of certs list and certs verify, and their JSON.
type certRow struct {
	Name      string     `json:"name"`
	Subject   string     `json:"subject,omitempty"`
	SANs      []string   `json:"sans,omitempty"`
	Issuer    string     `json:"issuer,omitempty"`
	Serial    string     `json:"serial,omitempty"`
	NotBefore *time.Time `json:"not_before,omitempty"`
	NotAfter  *time.Time `json:"not_after,omitempty"`
	DaysLeft  *int       `json:"days_left,omitempty"`
	// Key is how the private key is stored: "sealed", "plain",
	// "missing" ("" for CA rows).
	Key        string `json:"key,omitempty"`
	KEKID      string `json:"kek_id,omitempty"`
	KeyChecked bool   `json:"key_checked"`
	Revision   int64  `json:"revision,omitempty"`
	Valid      bool   `json:"valid"`
	Status     string `json:"status"`
	Error      string `json:"error,omitempty"`
}

// certsReport is the output of certs list and certs verify.
type certsReport struct {
	Prefix     string    `json:"prefix"`
	CA         []certRow `json:"ca"`
	CAError    string    `json:"ca_error,omitempty"`
	Identities []certRow `json:"identities"`
}

// exitCode is 0 when every identity is valid, 1 when some are, 2 when none
// is or there is no valid CA bundle.
func (r *certsReport) exitCode() int {
	valid := 0
	for _, id := range r.Identities {
		if id.Valid {
			valid++
		}
	}
	caOK := false
	for _, ca := range r.CA {
		caOK = caOK || ca.Valid
	}
	switch {
	case !caOK:
		return exitFailure
	case valid == len(r.Identities):
		return exitOK
	case valid > 0:
		return exitSome
	default:
		return exitFailure
	}
}

// storedIdentity is what etcd holds for one identity.
type storedIdentity struct {
	cert, key       []byte
	certRev, keyRev int64
	hasCert, hasKey bool
}

func (c *certsCmd) execList(ctx context.Context, args []string) (int, error) {
	if len(args) > 0 {
		return 0, usagef("list takes no arguments, got %q", args)
	}
	f := &c.list
	kr, err := f.keyring()
	if err != nil {
		return c.app.failOrUsage(err)
	}
	cli, err := f.etcd.newClient()
	if err != nil {
		return c.app.failOrUsage(err)
	}
	defer cli.Close()
	a := c.app
	prefix := strings.TrimSuffix(f.prefix, "/")
	gctx, cancel := context.WithTimeout(ctx, time.Duration(f.etcd.dialTimeout))
	resp, err := cli.Get(gctx, prefix+"/", clientv3.WithPrefix())
	cancel()
	if err != nil {
		return a.fail(exitFailure, "etcd: list %s/: %v", prefix, err), nil
	}
	now := time.Now()
	rep := &certsReport{Prefix: prefix, CA: []certRow{}, Identities: []certRow{}}
	ids := map[string]*storedIdentity{}
	var caPEM []byte
	for _, kv := range resp.Kvs {
		k := string(kv.Key)
		if k == mtls.CAKey(prefix) {
			caPEM = kv.Value
			rep.CA = caRows(kv.Value, kv.ModRevision, now)
			continue
		}
		name, file, ok := strings.Cut(strings.TrimPrefix(k, prefix+"/"), "/")
		if !ok || (file != "tls.crt" && file != "tls.key") {
			continue
		}
		id := ids[name]
		if id == nil {
			id = &storedIdentity{}
			ids[name] = id
		}
		if file == "tls.crt" {
			id.cert, id.certRev, id.hasCert = kv.Value, kv.ModRevision, true
		} else {
			id.key, id.keyRev, id.hasKey = kv.Value, kv.ModRevision, true
		}
	}
	if len(resp.Kvs) == 0 {
		return a.fail(exitFailure, "nothing stored under %s/", prefix), nil
	}
	roots := x509.NewCertPool()
	caCerts, _ := parseCerts(caPEM) // a malformed bundle trusts nothing, as for the Store
	for _, c := range caCerts {
		if c.BasicConstraintsValid && c.IsCA && now.After(c.NotBefore) && now.Before(c.NotAfter) {
			roots.AddCert(c)
		}
	}
	if caPEM == nil {
		rep.CAError = "no CA bundle at " + mtls.CAKey(prefix)
	}
	for _, name := range sortedAddrs(ids) {
		rep.Identities = append(rep.Identities,
			inspectIdentity(prefix, name, ids[name], roots, caPEM != nil, kr, f.allowPlain, now))
	}
	if f.json {
		err = writeJSON(a.stdout, rep)
	} else {
		err = writeCertsTable(a.stdout, rep)
	}
	if err != nil {
		return a.fail(exitFailure, "write: %v", err), nil
	}
	return rep.exitCode(), nil
}

// caRows describes every certificate of a CA bundle.
func caRows(bundle []byte, rev int64, now time.Time) []certRow {
	certs, err := parseCerts(bundle)
	if err != nil {
		return []certRow{{Name: "ca", Revision: rev, Status: string(mtls.ReasonMalformed), Error: "CA bundle: " + err.Error()}}
	}
	var rows []certRow
	for _, c := range certs {
		r := describeCert("ca", c, now)
		r.Revision = rev
		switch {
		case !c.BasicConstraintsValid || !c.IsCA:
			r.Status = string(mtls.ReasonNotCA)
		case now.Before(c.NotBefore):
			r.Status = string(mtls.ReasonNotYetValid)
		case now.After(c.NotAfter):
			r.Status = string(mtls.ReasonExpired)
		default:
			r.Status, r.Valid = "ok", true
		}
		rows = append(rows, r)
	}
	return rows
}

// parseCerts returns the certificates of data, strictly as the mtls Store
// reads them: every PEM block must be a certificate that parses, and
// nothing but white space may follow the last one; otherwise it says why.
func parseCerts(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("a %q PEM block among the certificates", b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %v", len(out)+1, err)
		}
		out = append(out, c)
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, errors.New("data that is not PEM after the certificates")
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM certificate")
	}
	return out, nil
}

// describeCert fills the descriptive fields of a row.
func describeCert(name string, c *x509.Certificate, now time.Time) certRow {
	r := certRow{
		Name:    name,
		Subject: c.Subject.String(),
		Issuer:  c.Issuer.String(),
		Serial:  strings.ToLower(c.SerialNumber.Text(16)),
		SANs:    sans(c),
	}
	nb, na := c.NotBefore.UTC(), c.NotAfter.UTC()
	days := int(math.Floor(c.NotAfter.Sub(now).Hours() / 24))
	r.NotBefore, r.NotAfter, r.DaysLeft = &nb, &na, &days
	return r
}

// sans lists a certificate's subject alternative names.
func sans(c *x509.Certificate) []string {
	var out []string
	out = append(out, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		out = append(out, ip.String())
	}
	for _, u := range c.URIs {
		out = append(out, (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String())
	}
	out = append(out, c.EmailAddresses...)
	return out
}

// inspectIdentity checks one stored identity with crypto/x509 as the mtls
// Store would: name, PEM, validity window, chain to the CA bundle, and,
// when kr is given, the private key against the certificate.
func inspectIdentity(prefix, name string, id *storedIdentity, roots *x509.CertPool, haveCA bool, kr *mtls.Keyring, allowPlain bool, now time.Time) certRow {
	r := certRow{Name: name, Revision: max(id.certRev, id.keyRev)}
	bad := func(reason mtls.Reason, format string, args ...any) certRow {
		r.Status = string(reason)
		r.Error = fmt.Sprintf(format, args...)
		return r
	}
	switch {
	case !id.hasKey:
		r.Key = "missing"
	case looksPlain(id.key):
		r.Key = "plain"
	default:
		r.Key = "sealed"
		if kekID, ok := mtls.SealedBy(id.key); ok {
			r.KEKID = kekID
		}
	}
	if err := mtls.ValidateName(name); err != nil {
		return bad("invalid_name", "%v", stripPkg(err))
	}
	if !id.hasCert {
		return bad(mtls.ReasonIncomplete, "a key without its certificate")
	}
	chain, err := parseCerts(id.cert)
	if err != nil {
		return bad(mtls.ReasonMalformed, "%s: %v", mtls.CertKey(prefix, name), err)
	}
	leaf := chain[0]
	desc := describeCert(name, leaf, now)
	desc.Key, desc.KEKID, desc.Revision = r.Key, r.KEKID, r.Revision
	r = desc
	if !id.hasKey {
		return bad(mtls.ReasonIncomplete, "a certificate without its key")
	}
	switch {
	case now.Before(leaf.NotBefore):
		return bad(mtls.ReasonNotYetValid, "valid from %s", leaf.NotBefore.UTC().Format(time.RFC3339))
	case now.After(leaf.NotAfter):
		return bad(mtls.ReasonExpired, "expired at %s", leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if !haveCA {
		return bad(mtls.ReasonUntrusted, "no CA bundle at %s", mtls.CAKey(prefix))
	}
	opts := x509.VerifyOptions{Roots: roots, Intermediates: x509.NewCertPool(), CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}
	for _, c := range chain[1:] {
		opts.Intermediates.AddCert(c)
	}
	if _, err := leaf.Verify(opts); err != nil {
		return bad(mtls.ReasonUntrusted, "does not chain to the CA bundle: %v", err)
	}
	if r.Key == "plain" && !allowPlain {
		return bad(mtls.ReasonPlainKey, "the private key is stored as plain PEM (allowed only with --allow-plaintext-keys)")
	}
	if kr != nil || r.Key == "plain" {
		keyPEM := id.key
		if r.Key == "sealed" {
			if kr == nil {
				return r
			}
			opened, err := kr.Open(mtls.KeyKey(prefix, name), id.key)
			if err != nil {
				return bad(mtls.ReasonUnseal, "%v", stripPkg(err))
			}
			keyPEM = opened
		}
		_, err := tls.X509KeyPair(id.cert, keyPEM)
		clear(keyPEM)
		if err != nil {
			return bad(mtls.ReasonKeyMismatch, "%v", err)
		}
		r.KeyChecked = true
	}
	r.Status, r.Valid = "ok", true
	return r
}

// looksPlain reports whether a stored key is plain PEM rather than an
// envelope.
func looksPlain(v []byte) bool {
	_, sealed := mtls.SealedBy(v)
	return !sealed && strings.Contains(string(v), "-----BEGIN")
}

// writeCertsTable writes list and verify's table.
func writeCertsTable(w io.Writer, r *certsReport) error {
	tw := newTable(w)
	row(tw, "NAME", "SUBJECT", "SANS", "ISSUER", "NOT_AFTER", "DAYS", "KEY", "REV", "STATUS")
	for _, rr := range slices.Concat(r.CA, r.Identities) {
		notAfter, days := "-", "-"
		if rr.NotAfter != nil {
			notAfter = rr.NotAfter.Format("2006-01-02")
			days = strconv.Itoa(*rr.DaysLeft)
		}
		key := rr.Key
		switch {
		case rr.Key == "sealed" && rr.KEKID != "":
			key = "sealed:" + rr.KEKID
		}
		if (rr.Key == "sealed" || rr.Key == "plain") && !rr.KeyChecked && rr.Valid {
			key += " (not opened)"
		}
		status := rr.Status
		if rr.Error != "" {
			status += ": " + rr.Error
		}
		rev := "-"
		if rr.Revision != 0 {
			rev = strconv.FormatInt(rr.Revision, 10)
		}
		row(tw, rr.Name, rr.Subject, strings.Join(rr.SANs, ","), rr.Issuer, notAfter, days, key, rev, status)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if r.CAError != "" {
		_, err := fmt.Fprintf(w, "\n%s\n", r.CAError)
		return err
	}
	return nil
}

func (c *certsCmd) execVerify(ctx context.Context, args []string) (int, error) {
	f := &c.verify
	for _, n := range args {
		if err := mtls.ValidateName(n); err != nil {
			return 0, usagef("identity %q: %v", n, stripPkg(err))
		}
	}
	kr, err := f.keyring()
	if err != nil {
		return c.app.failOrUsage(err)
	}
	if kr == nil && !f.allowPlain {
		return 0, usagef("verify opens the private keys: give --kek-file or --kek-env with --kek-id (or --allow-plaintext-keys for plain PEM keys)")
	}
	cli, err := f.etcd.newClient()
	if err != nil {
		return c.app.failOrUsage(err)
	}
	defer cli.Close()
	a := c.app
	opts := []mtls.Option{mtls.WithPrefix(f.prefix), mtls.WithAllowPlaintextKeys(f.allowPlain), mtls.WithLogger(discard),
		mtls.WithEtcdTimeout(time.Duration(f.etcd.dialTimeout))}
	if kr != nil {
		opts = append(opts, mtls.WithKeyring(kr))
	}
	sctx, cancel := context.WithTimeout(ctx, time.Duration(f.etcd.dialTimeout))
	store, err := mtls.NewStore(sctx, cli, opts...)
	cancel()
	if err != nil {
		return a.fail(exitFailure, "load %s: %v", strings.TrimSuffix(f.prefix, "/"), stripPkg(err)), nil
	}
	defer store.Close()

	now := time.Now()
	rep := &certsReport{Prefix: store.Prefix(), CA: []certRow{}, Identities: []certRow{}}
	for _, ca := range store.CACertificates() {
		r := describeCert("ca", ca, now)
		r.Status, r.Valid = "ok", true
		rep.CA = append(rep.CA, r)
	}
	if rej := store.CARejected(); rej != nil {
		rep.CA = append(rep.CA, certRow{Name: "ca", Revision: rej.Revision, Status: string(rej.Reason), Error: stripPkg(rej.Err).Error()})
	}
	if len(rep.CA) == 0 {
		rep.CAError = "no CA bundle at " + mtls.CAKey(store.Prefix())
	}
	byName := map[string]mtls.Identity{}
	for _, id := range store.Identities() {
		byName[id.Name] = id
	}
	names := args
	if len(names) == 0 {
		names = sortedAddrs(byName)
	}
	for _, name := range names {
		id, ok := byName[name]
		switch {
		case !ok:
			rep.Identities = append(rep.Identities, certRow{Name: name, Status: "missing", Error: "no such identity under " + store.Prefix()})
		case id.Certificate != nil:
			r := describeCert(name, id.Certificate.Leaf, now)
			r.Revision, r.KEKID, r.KeyChecked = id.Revision, id.KEKID, true
			r.Key = "plain"
			if id.KEKID != "" {
				r.Key = "sealed"
			}
			r.Status, r.Valid = "ok", true
			if id.Rejected != nil {
				r.Error = fmt.Sprintf("a newer update was refused (%s): %v", id.Rejected.Reason, stripPkg(id.Rejected.Err))
			}
			rep.Identities = append(rep.Identities, r)
		default:
			r := certRow{Name: name, Status: "refused"}
			if id.Rejected != nil {
				r.Status, r.Error, r.Revision = string(id.Rejected.Reason), stripPkg(id.Rejected.Err).Error(), id.Rejected.Revision
			}
			rep.Identities = append(rep.Identities, r)
		}
	}
	if len(rep.Identities) == 0 && len(args) == 0 && len(rep.CA) == 0 {
		return a.fail(exitFailure, "nothing stored under %s/", store.Prefix()), nil
	}
	if f.json {
		err = writeJSON(a.stdout, rep)
	} else {
		err = writeCertsTable(a.stdout, rep)
	}
	if err != nil {
		return a.fail(exitFailure, "write: %v", err), nil
	}
	return rep.exitCode(), nil
}

// putResult is certs put's --json output.
type putResult struct {
	Prefix     string `json:"prefix"`
	CARevision int64  `json:"ca_revision,omitempty"`
	Name       string `json:"name,omitempty"`
	Revision   int64  `json:"revision,omitempty"`
	KEKID      string `json:"kek_id,omitempty"`
}

func (c *certsCmd) execPut(ctx context.Context, args []string) (int, error) {
	f := &c.put
	if len(args) > 1 {
		return 0, usagef("one NAME only, got %q", args)
	}
	var name string
	if len(args) == 1 {
		name = args[0]
		if err := mtls.ValidateName(name); err != nil {
			return 0, usagef("identity %q: %v", name, stripPkg(err))
		}
		if c.putCert == "" || c.putKey == "" {
			return 0, usagef("put %s needs --cert and --key", name)
		}
	} else {
		if c.putCA == "" {
			return 0, usagef("missing NAME (with --cert and --key), or --ca")
		}
		if c.putCert != "" || c.putKey != "" {
			return 0, usagef("--cert and --key need a NAME")
		}
	}
	kr, err := f.keyring()
	if err != nil {
		return c.app.failOrUsage(err)
	}
	if name != "" && kr == nil && !f.allowPlain {
		return 0, usagef("put seals the private key: give --kek-file or --kek-env with --kek-id (or --allow-plaintext-keys to store it as plain PEM)")
	}
	read := func(flagName, path string) ([]byte, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, usagef("--%s: %v", flagName, err)
		}
		return b, nil
	}
	var caPEM, certPEM, keyPEM []byte
	if c.putCA != "" {
		if caPEM, err = read("ca", c.putCA); err != nil {
			return c.app.failOrUsage(err)
		}
	}
	if name != "" {
		if certPEM, err = read("cert", c.putCert); err != nil {
			return c.app.failOrUsage(err)
		}
		if keyPEM, err = read("key", c.putKey); err != nil {
			return c.app.failOrUsage(err)
		}
		defer clear(keyPEM)
	}
	cli, err := f.etcd.newClient()
	if err != nil {
		return c.app.failOrUsage(err)
	}
	defer cli.Close()
	a := c.app
	opts := []mtls.Option{mtls.WithPrefix(f.prefix), mtls.WithAllowPlaintextKeys(f.allowPlain),
		mtls.WithEtcdTimeout(time.Duration(f.etcd.dialTimeout))}
	res := putResult{Prefix: strings.TrimSuffix(f.prefix, "/")}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Duration(f.etcd.dialTimeout))
	defer cancel()
	if caPEM != nil {
		rev, err := mtls.PublishCA(wctx, cli, caPEM, opts...)
		if err != nil {
			return a.fail(exitFailure, "put CA bundle: %v", refusal(err)), nil
		}
		res.CARevision = rev
	}
	if name != "" {
		rev, err := mtls.Publish(wctx, cli, kr, name, certPEM, keyPEM, opts...)
		if err != nil {
			return a.fail(exitFailure, "put %s: %v", name, refusal(err)), nil
		}
		res.Name, res.Revision = name, rev
		if kr != nil {
			res.KEKID = kr.Primary()
		}
	}
	if f.json {
		if err := writeJSON(a.stdout, res); err != nil {
			return a.fail(exitFailure, "write: %v", err), nil
		}
		return exitOK, nil
	}
	if res.CARevision != 0 {
		fmt.Fprintf(a.stdout, "published %s at revision %d\n", mtls.CAKey(res.Prefix), res.CARevision)
	}
	if name != "" {
		how := "as plain PEM"
		if res.KEKID != "" {
			how = "sealed with " + res.KEKID
		}
		fmt.Fprintf(a.stdout, "published %s and %s (key %s) at revision %d\n",
			mtls.CertKey(res.Prefix, name), mtls.KeyKey(res.Prefix, name), how, res.Revision)
	}
	return exitOK, nil
}

// refusal formats a Publish error: a validation error names its reason.
func refusal(err error) string {
	var verr *mtls.ValidationError
	if errors.As(err, &verr) {
		return fmt.Sprintf("refused (%s): %v", verr.Reason, stripPkg(verr.Err))
	}
	return stripPkg(err).Error()
}
