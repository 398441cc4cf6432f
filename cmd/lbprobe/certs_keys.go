package main

import (
	"context"
	"flag"
	"fmt"
	"strings"

	"github.com/smartroute/smartroute/internal/cliutil"
	"github.com/smartroute/smartroute/mtls"
)

// kekFlags name the key-encryption keys: --kek, repeatable, and the
// single-key form --kek-file or --kek-env with --kek-id. The first KEK
// named is the primary: it seals (put, reseal); every one opens.
type kekFlags struct {
	keks kekList
	file string
	env  string
	id   string
}

func (k *kekFlags) register(fs *flag.FlagSet) {
	fs.Var(&k.keks, "kek", "a key-encryption key, ID=file:PATH or ID=env:VAR (ID=PATH for a file); repeat or comma-separate for several: the first seals, every one opens")
	fs.StringVar(&k.file, "kek-file", "", "file holding one key-encryption key (32 bytes raw, hex or base64), with --kek-id; comes before those of --kek")
	fs.StringVar(&k.env, "kek-env", "", "name of the environment variable holding one key-encryption key (instead of --kek-file)")
	fs.StringVar(&k.id, "kek-id", "", "ID of the key-encryption key of --kek-file or --kek-env, as written in the envelopes it seals")
}

// kekSpec is one --kek value.
type kekSpec struct{ id, kind, src string }

// kekList is the repeatable --kek flag: each Set appends, so that the
// flag can be given several times; a value may also list several
// comma-separated.
type kekList []kekSpec

func (l *kekList) String() string {
	var parts []string
	for _, k := range *l {
		parts = append(parts, k.id+"="+k.kind+":"+k.src)
	}
	return strings.Join(parts, ",")
}

func (l *kekList) Set(s string) error {
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		id, src, ok := strings.Cut(item, "=")
		if !ok || id == "" || src == "" {
			return fmt.Errorf("%q: want ID=file:PATH, ID=env:VAR or ID=PATH", item)
		}
		kind := "file"
		if k, rest, ok := strings.Cut(src, ":"); ok && (k == "file" || k == "env") {
			kind, src = k, rest
		}
		if src == "" {
			return fmt.Errorf("%q: empty %s", item, kind)
		}
		*l = append(*l, kekSpec{id: id, kind: kind, src: src})
	}
	return nil
}

// keyring returns the keyring the KEK flags name, or nil when they name
// none. Its errors are usage errors.
func (k *kekFlags) keyring() (*mtls.Keyring, error) {
	specs := []kekSpec(nil)
	switch {
	case k.file != "" && k.env != "":
		return nil, usagef("--kek-file and --kek-env: give one")
	case k.file != "" || k.env != "":
		if k.id == "" {
			return nil, usagef("--kek-id is required with --kek-file or --kek-env (the ID the envelopes name)")
		}
		if k.file != "" {
			specs = append(specs, kekSpec{id: k.id, kind: "file", src: k.file})
		} else {
			specs = append(specs, kekSpec{id: k.id, kind: "env", src: k.env})
		}
	case k.id != "":
		return nil, usagef("--kek-id needs --kek-file or --kek-env")
	}
	specs = append(specs, k.keks...)
	if len(specs) == 0 {
		return nil, nil
	}
	keks := make([]mtls.KEK, 0, len(specs))
	for _, s := range specs {
		var kek mtls.KEK
		var err error
		if s.kind == "env" {
			kek, err = mtls.LoadKEKEnv(s.id, s.src)
		} else {
			kek, err = mtls.LoadKEKFile(s.id, s.src)
		}
		if err != nil {
			return nil, usagef("key-encryption key: %v", stripPkg(err))
		}
		keks = append(keks, kek)
	}
	kr, err := mtls.NewKeyring(keks[0], keks[1:]...)
	if err != nil {
		return nil, usagef("key-encryption keys: %v", stripPkg(err))
	}
	return kr, nil
}

func (c *certsCmd) resealSpec() subcommand {
	return subcommand{
		name:  "reseal",
		short: "seal every private key again with the primary KEK (the first --kek), for KEK rotation",
		long: `Step 4 of rotating a key-encryption key (go doc mtls): every private key
under the prefix that is sealed with another KEK than the primary (the first
given), or stored as plain PEM, is opened with the KEKs given and sealed again
with the primary, each in a compare-and-swap write (mtls.Reseal). Give the new
KEK first and the old ones after:

  lbprobe certs reseal --kek kek-2026-06=file:/etc/smartroute/kek.new --kek kek-2026-01=file:/etc/smartroute/kek.old

It prints how many keys it resealed and lists the keys still sealed with
another KEK (those it could not open). Exit 0 when every key is sealed with
the primary, 1 when some are left.`,
		flags:  c.reseal.register,
		exec:   c.execReseal,
		format: &c.reseal.format,
	}
}

// resealResult is certs reseal's JSON output.
type resealResult struct {
	Prefix    string   `json:"prefix"`
	Primary   string   `json:"primary"`
	Resealed  int      `json:"resealed"`
	Remaining []string `json:"remaining"` // identities whose key is not sealed with the primary
	Errors    []string `json:"errors,omitempty"`
}

func (c *certsCmd) execReseal(ctx context.Context, args []string) (int, error) {
	f := &c.reseal
	if len(args) > 0 {
		return 0, usagef("reseal takes no arguments, got %q", args)
	}
	kr, err := f.keks.keyring()
	if err != nil {
		return c.app.failOrUsage(err)
	}
	if kr == nil {
		return 0, usagef("reseal needs the new KEK first, then the old ones: --kek NEW_ID=file:PATH --kek OLD_ID=file:PATH")
	}
	opts, err := f.options(kr)
	if err != nil {
		return c.app.failOrUsage(err)
	}
	cli, err := f.etcd.newClient(ctx, writeAccess(f.prefix))
	if err != nil {
		return c.app.failOrUsage(err)
	}
	defer cli.Close()
	a := c.app
	res := resealResult{Prefix: strings.TrimSuffix(f.prefix, "/"), Primary: kr.Primary(), Remaining: []string{}}
	wctx, cancel := context.WithTimeout(ctx, 4*f.etcd.dialTimeout())
	defer cancel()
	n, rerr := mtls.Reseal(wctx, cli, kr, opts...)
	res.Resealed = n
	if rerr != nil {
		for _, line := range strings.Split(rerr.Error(), "\n") {
			res.Errors = append(res.Errors, strings.TrimPrefix(line, "mtls: "))
		}
	}
	rep, err := mtls.Inspect(wctx, cli, opts...)
	if err != nil {
		return a.failEtcd(&f.etcd, err, readAccess(f.prefix), "read the store"), nil
	}
	for _, id := range rep.Identities {
		if id.Key == "plain" || (id.Key == "sealed" && id.SealedWith != kr.Primary()) {
			res.Remaining = append(res.Remaining, fmt.Sprintf("%s (%s)", id.Name, keyDesc(id)))
		}
	}
	code := exitOK
	if len(res.Remaining) > 0 || len(res.Errors) > 0 {
		code = exitSome
	}
	if f.format.IsJSON() {
		if err := writeJSON(a.stdout, res); err != nil {
			return a.fail(exitFailure, "write: %v", err), nil
		}
		return code, nil
	}
	fmt.Fprintf(a.stdout, "resealed %s under %s/ with %s\n", cliutil.Plural(res.Resealed, "private key", "private keys"), res.Prefix, res.Primary)
	if len(res.Remaining) > 0 {
		fmt.Fprintf(a.stdout, "still not sealed with %s: %s\n", res.Primary, strings.Join(res.Remaining, ", "))
	}
	for _, e := range res.Errors {
		fmt.Fprintf(a.stderr, "lbprobe: reseal: %s\n", e)
	}
	return code, nil
}

func keyDesc(id mtls.InspectedIdentity) string {
	if id.Key == "sealed" {
		return "sealed with " + id.SealedWith
	}
	return id.Key
}
