package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/smartroute/smartroute/internal/cliutil"
	"github.com/smartroute/smartroute/mtls"
)

func (c *certsCmd) putSpec() subcommand {
	return subcommand{
		name:  "put",
		args:  "[NAME]",
		short: "seal and upload a certificate and key for identity NAME, and/or a CA bundle",
		long: `With --ca, publishes the CA bundle first (mtls.PublishCA: it refuses a
bundle that would orphan an identity in use), with its signature when
--ca-signing-key (signed here) or --ca-signature (signed offline by certs
sign) is given. With --trust-anchors or --ca-signers, a bundle that pinned
services would refuse is refused here and nothing is written. With NAME,
--cert and --key, validates the pair against the CA bundle and the
revocation list in etcd and writes it in one transaction with the private
key sealed by the primary KEK (mtls.Publish). Without a KEK the key is
written as plain PEM only with --allow-plaintext-keys.`,
		noEnv: []string{"cert", "key", "ca", "ca-signing-key", "ca-signature"},
		flags: func(fs *flag.FlagSet) {
			c.put.register(fs)
			fs.StringVar(&c.putCert, "cert", "", "PEM certificate chain of NAME, leaf first")
			fs.StringVar(&c.putKey, "key", "", "PEM private key of --cert")
			fs.StringVar(&c.putCA, "ca", "", "PEM CA bundle to publish (before the identity, if any)")
			fs.StringVar(&c.putCASigningKey, "ca-signing-key", "", "PEM private key (Ed25519, ECDSA or RSA) that signs the --ca bundle, for services pinned with mtls.WithBundleSigners")
			fs.StringVar(&c.putCASignature, "ca-signature", "", "signature of the --ca bundle made offline by 'lbprobe certs sign'")
		},
		exec:   c.execPut,
		format: &c.put.format,
	}
}

// putResult is certs put's --json output.
type putResult struct {
	Prefix     string `json:"prefix"`
	CARevision int64  `json:"ca_revision,omitempty"`
	CASigned   bool   `json:"ca_signed,omitempty"`
	Name       string `json:"name,omitempty"`
	Revision   int64  `json:"revision,omitempty"`
	KEKID      string `json:"kek_id,omitempty"`
}

// readFlagFile reads the file a flag names; its error is a usage error.
func readFlagFile(flagName, path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, usagef("--%s: %v", flagName, err)
	}
	return b, nil
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
	if (c.putCASigningKey != "" || c.putCASignature != "") && c.putCA == "" {
		return 0, usagef("--ca-signing-key and --ca-signature sign the --ca bundle: give --ca")
	}
	if c.putCASigningKey != "" && c.putCASignature != "" {
		return 0, usagef("--ca-signing-key and --ca-signature: give one")
	}
	kr, err := f.keks.keyring()
	if err != nil {
		return c.app.failOrUsage(err)
	}
	if name != "" && kr == nil && !f.allowPlain {
		return 0, usagef("put seals the private key: give --kek (or --kek-file or --kek-env with --kek-id; or --allow-plaintext-keys to store it as plain PEM)")
	}
	opts, err := f.options(nil)
	if err != nil {
		return c.app.failOrUsage(err)
	}
	var caPEM, certPEM, keyPEM []byte
	if c.putCA != "" {
		if caPEM, err = readFlagFile("ca", c.putCA); err != nil {
			return c.app.failOrUsage(err)
		}
		switch {
		case c.putCASigningKey != "":
			keyPEM, err := readFlagFile("ca-signing-key", c.putCASigningKey)
			if err != nil {
				return c.app.failOrUsage(err)
			}
			signer, err := mtls.ParseSigningKey(keyPEM)
			clear(keyPEM)
			if err != nil {
				return 0, usagef("--ca-signing-key: %v", stripPkg(err))
			}
			opts = append(opts, mtls.WithBundleSigningKey(signer))
		case c.putCASignature != "":
			sig, err := readFlagFile("ca-signature", c.putCASignature)
			if err != nil {
				return c.app.failOrUsage(err)
			}
			opts = append(opts, mtls.WithBundleSignature(sig))
		}
	}
	if name != "" {
		if certPEM, err = readFlagFile("cert", c.putCert); err != nil {
			return c.app.failOrUsage(err)
		}
		if keyPEM, err = readFlagFile("key", c.putKey); err != nil {
			return c.app.failOrUsage(err)
		}
		defer clear(keyPEM)
	}
	cli, err := f.etcd.newClient(ctx, writeAccess(f.prefix))
	if err != nil {
		return c.app.failOrUsage(err)
	}
	defer cli.Close()
	a := c.app
	res := putResult{Prefix: strings.TrimSuffix(f.prefix, "/"), CASigned: c.putCASigningKey != "" || c.putCASignature != ""}
	wctx, cancel := context.WithTimeout(ctx, 2*f.etcd.dialTimeout())
	defer cancel()
	if caPEM != nil {
		rev, err := mtls.PublishCA(wctx, cli, caPEM, opts...)
		if err != nil {
			return a.failWrite(&f.etcd, err, f.prefix, "put CA bundle"), nil
		}
		res.CARevision = rev
	}
	if name != "" {
		rev, err := mtls.Publish(wctx, cli, kr, name, certPEM, keyPEM, opts...)
		if err != nil {
			return a.failWrite(&f.etcd, err, f.prefix, "put "+name), nil
		}
		res.Name, res.Revision = name, rev
		if kr != nil {
			res.KEKID = kr.Primary()
		}
	}
	if f.format.IsJSON() {
		if err := writeJSON(a.stdout, res); err != nil {
			return a.fail(exitFailure, "write: %v", err), nil
		}
		return exitOK, nil
	}
	if res.CARevision != 0 {
		signed := ""
		if res.CASigned {
			signed = " with its signature " + mtls.CASignatureKey(res.Prefix)
		}
		fmt.Fprintf(a.stdout, "published %s%s at revision %d\n", mtls.CAKey(res.Prefix), signed, res.CARevision)
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

// signFlags are certs sign's flags: it reads files, not etcd.
type signFlags struct {
	prefix, ca, key string
}

func (c *certsCmd) signSpec() subcommand {
	return subcommand{
		name:  "sign",
		short: "sign a CA bundle offline for services pinned to a signing key; prints the signature",
		long: `Signs the CA bundle --ca with the private key --signing-key (Ed25519, ECDSA
or RSA, PEM) for the etcd key <--certs-prefix>/ca and prints the detached
signature (mtls.SignBundle; its format is mtls.BundleSignature). Run it where
the signing key lives, offline; publish the bundle and the signature
together with 'lbprobe certs put --ca BUNDLE --ca-signature SIG'. Services
pinned with mtls.WithBundleSigners (the public key) accept only bundles so
signed. Reads no etcd.`,
		noEnv: []string{"ca", "signing-key"},
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&c.signCmd.prefix, "certs-prefix", mtls.DefaultPrefix, "etcd key prefix of the certificate store the bundle is for")
			fs.StringVar(&c.signCmd.ca, "ca", "", "PEM CA bundle to sign")
			fs.StringVar(&c.signCmd.key, "signing-key", "", "PEM private key that signs")
		},
		exec: c.execSign,
	}
}

func (c *certsCmd) execSign(_ context.Context, args []string) (int, error) {
	f := &c.signCmd
	if len(args) > 0 {
		return 0, usagef("sign takes no arguments, got %q", args)
	}
	if f.ca == "" || f.key == "" {
		return 0, usagef("sign needs --ca and --signing-key")
	}
	bundle, err := readFlagFile("ca", f.ca)
	if err != nil {
		return c.app.failOrUsage(err)
	}
	keyPEM, err := readFlagFile("signing-key", f.key)
	if err != nil {
		return c.app.failOrUsage(err)
	}
	signer, err := mtls.ParseSigningKey(keyPEM)
	clear(keyPEM)
	if err != nil {
		return 0, usagef("--signing-key: %v", stripPkg(err))
	}
	sig, err := mtls.SignBundle(signer, bundle, mtls.WithPrefix(f.prefix))
	if err != nil {
		return c.app.fail(exitNone, "%v", stripPkg(err)), nil
	}
	if _, err := c.app.stdout.Write(sig); err != nil {
		return c.app.fail(exitFailure, "write: %v", err), nil
	}
	return exitOK, nil
}

func (c *certsCmd) revokeSpec() subcommand {
	return subcommand{
		name:  "revoke",
		args:  "[NAME]",
		short: "add a certificate to the revocation list: identity NAME's, or --serial, or every one of a key (--spki)",
		long: `Adds an entry to the revocation list <--certs-prefix>/revoked (mtls.Revoke):
the certificate stored for identity NAME (by its serial), or --serial SERIAL
(hexadecimal, as certs list --json prints it), or every certificate of a key
--spki PIN (base64 SHA-256 of its SubjectPublicKeyInfo, the spki_sha256 of
certs list --json), with --reason. Services apply it within a second: new
handshakes presenting the certificate fail on both sides, and connections
tracked with mtls NewListener and DialTLS are closed. Deleting NAME's keys
does not revoke it. Undo with 'lbprobe certs unrevoke SERIAL|PIN'.`,
		flags: func(fs *flag.FlagSet) {
			c.revoke.register(fs)
			fs.StringVar(&c.revokeSerial, "serial", "", "serial number to revoke (hexadecimal)")
			fs.StringVar(&c.revokeSPKI, "spki", "", "SPKI SHA-256 pin whose every certificate is revoked")
			fs.StringVar(&c.revokeReason, "reason", "", "why (required): key compromise, laptop stolen, …")
		},
		noEnv:  []string{"serial", "spki", "reason"},
		exec:   c.execRevoke,
		format: &c.revoke.format,
	}
}

func (c *certsCmd) unrevokeSpec() subcommand {
	return subcommand{
		name:   "unrevoke",
		args:   "SERIAL|PIN",
		short:  "remove a serial number or SPKI pin from the revocation list",
		long:   `Removes the entries naming SERIAL or PIN from <--certs-prefix>/revoked (mtls.Unrevoke).`,
		flags:  c.revoke.register,
		exec:   c.execUnrevoke,
		format: &c.revoke.format,
	}
}

// revokeResult is certs revoke's and unrevoke's JSON output.
type revokeResult struct {
	Prefix   string           `json:"prefix"`
	Entry    *mtls.Revocation `json:"entry,omitempty"`
	Removed  string           `json:"removed,omitempty"`
	Revision int64            `json:"revision"`
}

func (c *certsCmd) execRevoke(ctx context.Context, args []string) (int, error) {
	f := &c.revoke
	if len(args) > 1 {
		return 0, usagef("one NAME only, got %q", args)
	}
	given := 0
	for _, s := range []string{strings.Join(args, ""), c.revokeSerial, c.revokeSPKI} {
		if s != "" {
			given++
		}
	}
	if given != 1 {
		return 0, usagef("name what to revoke: NAME, --serial or --spki (one of them)")
	}
	if strings.TrimSpace(c.revokeReason) == "" {
		return 0, usagef("--reason is required: say why, for whoever reads the list")
	}
	if len(args) == 1 {
		if err := mtls.ValidateName(args[0]); err != nil {
			return 0, usagef("identity %q: %v", args[0], stripPkg(err))
		}
	}
	opts, err := f.options(nil)
	if err != nil {
		return c.app.failOrUsage(err)
	}
	cli, err := f.etcd.newClient(ctx, writeAccess(f.prefix))
	if err != nil {
		return c.app.failOrUsage(err)
	}
	defer cli.Close()
	a := c.app
	wctx, cancel := context.WithTimeout(ctx, 2*f.etcd.dialTimeout())
	defer cancel()
	entry := mtls.Revocation{Serial: c.revokeSerial, SPKISHA256: c.revokeSPKI, Reason: c.revokeReason}
	what := ""
	if len(args) == 1 {
		rep, err := mtls.Inspect(wctx, cli, opts...)
		if err != nil {
			return a.failEtcd(&f.etcd, err, readAccess(f.prefix), "read the store"), nil
		}
		for _, id := range rep.Identities {
			if id.Name == args[0] && id.Stored != nil {
				entry.Serial, what = id.Stored.Serial, " of identity "+id.Name
			}
		}
		if entry.Serial == "" {
			return a.fail(exitNone, "revoke %s: no certificate that parses at %s", args[0], mtls.CertKey(rep.Prefix, args[0])), nil
		}
	}
	rev, err := mtls.Revoke(wctx, cli, []mtls.Revocation{entry}, opts...)
	if err != nil {
		if strings.Contains(err.Error(), "entry 0:") {
			return 0, usagef("%v", stripPkg(err))
		}
		return a.failWrite(&f.etcd, err, f.prefix, "revoke"), nil
	}
	res := revokeResult{Prefix: strings.TrimSuffix(f.prefix, "/"), Revision: rev}
	res.Entry = &entry
	if f.format.IsJSON() {
		if err := writeJSON(a.stdout, res); err != nil {
			return a.fail(exitFailure, "write: %v", err), nil
		}
		return exitOK, nil
	}
	by := "serial " + entry.Serial
	if entry.Serial == "" {
		by = "every certificate of key " + entry.SPKISHA256
	}
	fmt.Fprintf(a.stdout, "revoked %s%s in %s at revision %d\n", by, what, mtls.RevokedKey(res.Prefix), rev)
	return exitOK, nil
}

func (c *certsCmd) execUnrevoke(ctx context.Context, args []string) (int, error) {
	f := &c.revoke
	if len(args) != 1 {
		return 0, usagef("give one SERIAL or PIN")
	}
	opts, err := f.options(nil)
	if err != nil {
		return c.app.failOrUsage(err)
	}
	cli, err := f.etcd.newClient(ctx, writeAccess(f.prefix))
	if err != nil {
		return c.app.failOrUsage(err)
	}
	defer cli.Close()
	a := c.app
	wctx, cancel := context.WithTimeout(ctx, 2*f.etcd.dialTimeout())
	defer cancel()
	rev, err := mtls.Unrevoke(wctx, cli, args[0], opts...)
	if err != nil {
		return a.failWrite(&f.etcd, err, f.prefix, "unrevoke"), nil
	}
	res := revokeResult{Prefix: strings.TrimSuffix(f.prefix, "/"), Removed: args[0], Revision: rev}
	if f.format.IsJSON() {
		if err := writeJSON(a.stdout, res); err != nil {
			return a.fail(exitFailure, "write: %v", err), nil
		}
		return exitOK, nil
	}
	fmt.Fprintf(a.stdout, "removed %s from %s at revision %d\n", args[0], mtls.RevokedKey(res.Prefix), rev)
	return exitOK, nil
}

// failWrite reports a refused write: etcd's failure (exitEtcd, the cause
// named) or a refusal by validation (exitNone, its reason named).
func (a *app) failWrite(e *etcdFlags, err error, prefix, doing string) int {
	derr := e.diagnose(stripPkg(err), writeAccess(prefix), e.dialTimeout())
	var ee *cliutil.EtcdError
	if errors.As(derr, &ee) {
		return a.failErr(exitEtcd, derr)
	}
	return a.fail(exitNone, "%s: %s", doing, refusal(err))
}
