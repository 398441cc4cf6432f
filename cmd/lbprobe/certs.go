package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/smartroute/smartroute/internal/cliutil"
	"github.com/smartroute/smartroute/mtls"
)

// certsFlags are the flags every certs command that reads etcd takes.
type certsFlags struct {
	etcd       etcdFlags
	prefix     string
	keks       kekFlags
	pins       pinFlags
	allowPlain bool
	format     cliutil.Format
}

func (f *certsFlags) register(fs *flag.FlagSet) {
	f.etcd.register(fs)
	fs.StringVar(&f.prefix, "certs-prefix", mtls.DefaultPrefix, "etcd key prefix of the certificate store")
	f.keks.register(fs)
	f.pins.register(fs)
	fs.BoolVar(&f.allowPlain, "allow-plaintext-keys", false, "accept (and, for put without a KEK, write) private keys stored as plain PEM")
	cliutil.RegisterFormat(fs, &f.format)
}

// options returns the mtls options the flags name: prefix, pins, plain
// keys, and the keyring kr if not nil.
func (f *certsFlags) options(kr *mtls.Keyring) ([]mtls.Option, error) {
	opts := []mtls.Option{mtls.WithPrefix(f.prefix), mtls.WithAllowPlaintextKeys(f.allowPlain),
		mtls.WithEtcdTimeout(f.etcd.dialTimeout()), mtls.WithLogger(discard)}
	if kr != nil {
		opts = append(opts, mtls.WithKeyring(kr))
	}
	pins, err := f.pins.options()
	if err != nil {
		return nil, err
	}
	return append(opts, pins...), nil
}

// pinFlags name the local trust the CA bundle is pinned to, as a pinned
// Store has it.
type pinFlags struct {
	anchors, signers string
}

func (p *pinFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&p.anchors, "trust-anchors", "", "PEM root CAs the CA bundle must chain to, as services pinned with mtls.WithTrustAnchors judge it")
	fs.StringVar(&p.signers, "ca-signers", "", "PEM public keys one of which must sign the CA bundle (/certs/ca.sig), as services pinned with mtls.WithBundleSigners judge it")
}

// options loads the pins. Its errors are usage errors.
func (p *pinFlags) options() ([]mtls.Option, error) {
	var opts []mtls.Option
	if p.anchors != "" {
		roots, err := mtls.LoadTrustAnchors(p.anchors)
		if err != nil {
			return nil, usagef("--trust-anchors: %v", stripPkg(err))
		}
		opts = append(opts, mtls.WithTrustAnchors(roots...))
	}
	if p.signers != "" {
		keys, err := mtls.LoadBundleSigners(p.signers)
		if err != nil {
			return nil, usagef("--ca-signers: %v", stripPkg(err))
		}
		opts = append(opts, mtls.WithBundleSigners(keys...))
	}
	return opts, nil
}

// certsCmd holds the certs subcommands.
type certsCmd struct {
	app     *app
	list    certsFlags
	verify  certsFlags
	put     certsFlags
	reseal  certsFlags
	revoke  certsFlags
	signCmd signFlags

	putCert, putKey, putCA, putCASigningKey, putCASignature string
	revokeSerial, revokeSPKI, revokeReason                  string
}

func (c *certsCmd) listSpec() subcommand {
	return subcommand{
		name:  "list",
		short: "list the CA bundle and the identities under /certs, each judged as a service's mtls.Store judges it",
		long: `Reads the certificate store's keys from etcd and judges them with the mtls
package's own validation (mtls.Inspect: the code a service's Store runs), then
prints one row per CA certificate (NAME "ca") and per identity: subject, SANs,
issuer, expiry, days left, how the private key is stored (sealed with which
KEK, or plain), the etcd revision, and a status: "ok", or the reason a Store
refuses it (expired, not_yet_valid, untrusted, revoked, key_mismatch,
incomplete, malformed, plain_key, unseal, not_ca, unpinned, orphaned) and why.
The key is opened and matched against its certificate only when a KEK is given
(--kek); without one a sealed key is checked for form only and the key column
says "not opened". With --trust-anchors or --ca-signers the CA bundle is
judged as pinned services judge it.`,
		flags: c.list.register,
		exec: func(ctx context.Context, args []string) (int, error) {
			return c.execInspect(ctx, &c.list, "list", args)
		},
		format: &c.list.format,
	}
}

func (c *certsCmd) verifySpec() subcommand {
	return subcommand{
		name:  "verify",
		args:  "[NAME...]",
		short: "judge identities exactly as a service's mtls.Store does, keys opened, and say whether it accepts them",
		long: `As certs list (the same validation, mtls.Inspect), but the private keys are
opened with the KEKs given (--kek; required unless every key is plain PEM and
--allow-plaintext-keys is set), and only the identities NAME are reported
(default: every identity stored): "ok", or the Store's reason and error;
"missing" for a NAME that is not stored. This is the verdict services with
these KEKs and pins will reach.`,
		flags: c.verify.register,
		exec: func(ctx context.Context, args []string) (int, error) {
			return c.execInspect(ctx, &c.verify, "verify", args)
		},
		format: &c.verify.format,
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
	// SHA256 is the certificate's fingerprint, SPKI its key's pin (as
	// certs revoke --spki takes it).
	SHA256 string `json:"sha256,omitempty"`
	SPKI   string `json:"spki_sha256,omitempty"`
	// Key is how the private key is stored: "sealed", "plain",
	// "missing", "malformed" ("" for CA rows).
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
	Pinned     bool      `json:"pinned"`
	CA         []certRow `json:"ca"`
	CAError    string    `json:"ca_error,omitempty"`
	Identities []certRow `json:"identities"`
	// Revoked is the revocation list in force; RevokedError why the list
	// stored is refused.
	Revoked      []mtls.Revocation `json:"revoked,omitempty"`
	RevokedError string            `json:"revoked_error,omitempty"`
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
		return exitNone
	case valid == len(r.Identities):
		return exitOK
	case valid > 0:
		return exitSome
	default:
		return exitNone
	}
}

// execInspect runs certs list (args: none; keys opened only with a KEK)
// and certs verify (args: names; keys always opened).
func (c *certsCmd) execInspect(ctx context.Context, f *certsFlags, cmd string, args []string) (int, error) {
	if cmd == "list" && len(args) > 0 {
		return 0, usagef("list takes no arguments, got %q", args)
	}
	for _, n := range args {
		if err := mtls.ValidateName(n); err != nil {
			return 0, usagef("identity %q: %v", n, stripPkg(err))
		}
	}
	kr, err := f.keks.keyring()
	if err != nil {
		return c.app.failOrUsage(err)
	}
	if cmd == "verify" && kr == nil && !f.allowPlain {
		return 0, usagef("verify opens the private keys: give --kek-file or --kek-env with --kek-id, or --kek (or --allow-plaintext-keys for plain PEM keys)")
	}
	opts, err := f.options(kr)
	if err != nil {
		return c.app.failOrUsage(err)
	}
	cli, err := f.etcd.newClient(ctx, readAccess(f.prefix))
	if err != nil {
		return c.app.failOrUsage(err)
	}
	defer cli.Close()
	a := c.app
	ictx, cancel := context.WithTimeout(ctx, f.etcd.dialTimeout())
	rep, err := mtls.Inspect(ictx, cli, opts...)
	cancel()
	if err != nil {
		return a.failEtcd(&f.etcd, err, readAccess(f.prefix), "read the store"), nil
	}
	out := reportOf(rep, time.Now())
	if len(args) > 0 {
		byName := map[string]certRow{}
		for _, r := range out.Identities {
			byName[r.Name] = r
		}
		out.Identities = out.Identities[:0]
		for _, n := range args {
			r, ok := byName[n]
			if !ok {
				r = certRow{Name: n, Status: "missing", Error: "no such identity under " + rep.Prefix}
			}
			out.Identities = append(out.Identities, r)
		}
	}
	if len(args) == 0 && len(out.Identities) == 0 && len(out.CA) == 0 && out.CAError != "" {
		return a.fail(exitNone, "nothing stored under %s/", rep.Prefix), nil
	}
	if f.format.IsJSON() {
		err = writeJSON(a.stdout, out)
	} else {
		err = writeCertsTable(a.stdout, out, f.format == cliutil.Wide)
	}
	if err != nil {
		return a.fail(exitFailure, "write: %v", err), nil
	}
	return out.exitCode(), nil
}

// reportOf turns mtls's judgement into rows.
func reportOf(rep *mtls.Report, now time.Time) *certsReport {
	out := &certsReport{Prefix: rep.Prefix, Pinned: rep.Pinned, CA: []certRow{}, Identities: []certRow{}, Revoked: rep.Revocations}
	switch {
	case rep.CA != nil:
		for _, info := range rep.CA {
			r := describeInfo("ca", info, now)
			switch {
			case now.Before(info.NotBefore):
				r.Status = string(mtls.ReasonNotYetValid)
			case now.After(info.NotAfter):
				r.Status = string(mtls.ReasonExpired)
			default:
				r.Status, r.Valid = "ok", true
			}
			out.CA = append(out.CA, r)
		}
		if rep.CARejected != nil {
			out.CAError = "a newer CA bundle is refused: " + rejectedText(rep.CARejected)
		}
	case rep.CARejected != nil:
		rows := []certRow{{Name: "ca"}}
		if len(rep.CAStored) > 0 {
			rows = rows[:0]
			for _, info := range rep.CAStored {
				rows = append(rows, describeInfo("ca", info, now))
			}
		}
		for i := range rows {
			rows[i].Revision = rep.CARejected.Revision
			rows[i].Status = string(rep.CARejected.Reason)
		}
		rows[0].Error = stripPkg(rep.CARejected.Err).Error()
		out.CA = rows
	default:
		out.CAError = "no CA bundle at " + mtls.CAKey(rep.Prefix)
	}
	if rep.RevocationsRejected != nil {
		out.RevokedError = rejectedText(rep.RevocationsRejected)
	}
	for _, id := range rep.Identities {
		var r certRow
		switch {
		case id.Certificate != nil:
			r = describeInfo(id.Name, *id.Certificate, now)
			r.Revision, r.KeyChecked = id.Revision, id.KeyChecked
			r.Status, r.Valid = "ok", true
			if id.Rejected != nil {
				r.Error = "a newer update is refused: " + rejectedText(id.Rejected)
			}
		case id.Stored != nil:
			r = describeInfo(id.Name, *id.Stored, now)
		default:
			r = certRow{Name: id.Name}
		}
		r.Key, r.KEKID = id.Key, id.SealedWith
		if !r.Valid {
			r.Status = "refused"
			if id.Rejected != nil {
				r.Status, r.Error, r.Revision = string(id.Rejected.Reason), stripPkg(id.Rejected.Err).Error(), id.Rejected.Revision
			}
		}
		out.Identities = append(out.Identities, r)
	}
	return out
}

func rejectedText(v *mtls.ValidationError) string {
	return fmt.Sprintf("%s at revision %d (%s): %v", v.Key, v.Revision, v.Reason, stripPkg(v.Err))
}

// describeInfo fills the descriptive fields of a row.
func describeInfo(name string, c mtls.CertificateInfo, now time.Time) certRow {
	nb, na := c.NotBefore, c.NotAfter
	days := int(math.Floor(c.NotAfter.Sub(now).Hours() / 24))
	return certRow{
		Name: name, Subject: c.Subject, Issuer: c.Issuer, Serial: c.Serial, SANs: c.SANs(),
		NotBefore: &nb, NotAfter: &na, DaysLeft: &days, SHA256: c.SHA256, SPKI: c.SPKISHA256,
	}
}

// writeCertsTable writes list and verify's table; wide adds the serial,
// the certificate's SHA-256 and its key's SPKI pin.
func writeCertsTable(w io.Writer, r *certsReport, wide bool) error {
	tw := newTable(w)
	head := []string{"NAME", "SUBJECT", "SANS", "ISSUER", "NOT_AFTER", "DAYS", "KEY", "REV"}
	if wide {
		head = append(head, "SERIAL", "SHA256", "SPKI_SHA256")
	}
	row(tw, append(head, "STATUS")...)
	for _, rr := range slices.Concat(r.CA, r.Identities) {
		notAfter, days := "-", "-"
		if rr.NotAfter != nil {
			notAfter = rr.NotAfter.Format("2006-01-02")
			days = strconv.Itoa(*rr.DaysLeft)
		}
		key := rr.Key
		if rr.Key == "sealed" && rr.KEKID != "" {
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
		cells := []string{rr.Name, rr.Subject, strings.Join(rr.SANs, ","), rr.Issuer, notAfter, days, key, rev}
		if wide {
			cells = append(cells, rr.Serial, rr.SHA256, rr.SPKI)
		}
		row(tw, append(cells, status)...)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var foot []string
	if r.CAError != "" {
		foot = append(foot, r.CAError)
	}
	if len(r.Revoked) > 0 {
		foot = append(foot, fmt.Sprintf("%s revoked (%s)", cliutil.Plural(len(r.Revoked), "certificate", "certificates"), mtls.RevokedKey(r.Prefix)))
	}
	if r.RevokedError != "" {
		foot = append(foot, "the revocation list stored is refused: "+r.RevokedError)
	}
	if len(foot) > 0 {
		_, err := fmt.Fprintf(w, "\n%s\n", strings.Join(foot, "\n"))
		return err
	}
	return nil
}

// refusal formats a Publish error: a validation error names its reason.
func refusal(err error) string {
	var verr *mtls.ValidationError
	if errors.As(err, &verr) {
		return fmt.Sprintf("refused (%s): %v", verr.Reason, stripPkg(verr.Err))
	}
	return stripPkg(err).Error()
}

// failEtcd reports an error of etcd after the start-up check: the cause
// named (exitEtcd) when cliutil recognises it, else what was being done
// (exitNone).
func (a *app) failEtcd(e *etcdFlags, err error, acc cliutil.Access, doing string) int {
	err = e.diagnose(stripPkg(err), acc, e.dialTimeout())
	var ee *cliutil.EtcdError
	if errors.As(err, &ee) {
		return a.failErr(exitEtcd, err)
	}
	return a.failErr(exitNone, fmt.Errorf("%s: %w", doing, err))
}
