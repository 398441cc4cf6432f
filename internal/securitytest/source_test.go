package securitytest

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// insecureAllowed lists the non-test files allowed to set
// InsecureSkipVerify, with why: each must verify the peer itself in
// VerifyConnection.
var insecureAllowed = map[string]string{
	// A client tls.Config whose trusted CAs change with rotation: Go
	// reads RootCAs once per config, so the config turns the built-in
	// check off and verifies the chain and the server name itself, against
	// the CA bundle of the moment, in VerifyConnection.
	"mtls/tlsconfig.go": "verifies in VerifyConnection against the live CA bundle",
}

// sources parses every non-test Go file of the module.
func sources(t *testing.T) map[string]*ast.File {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not found: %v", err)
	}
	fset := token.NewFileSet()
	files := make(map[string]*ast.File)
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		files[filepath.ToSlash(rel)] = f
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 20 {
		t.Fatalf("found only %d source files under %s", len(files), root)
	}
	return files
}

// tlsConfigLiterals calls fn for every tls.Config composite literal.
func tlsConfigLiterals(f *ast.File, fn func(*ast.CompositeLit)) {
	ast.Inspect(f, func(n ast.Node) bool {
		lit, ok := n.(*ast.CompositeLit)
		if !ok {
			return true
		}
		sel, ok := lit.Type.(*ast.SelectorExpr)
		if ok && sel.Sel.Name == "Config" {
			if id, ok := sel.X.(*ast.Ident); ok && id.Name == "tls" {
				fn(lit)
			}
		}
		return true
	})
}

func field(lit *ast.CompositeLit, name string) ast.Expr {
	for _, e := range lit.Elts {
		if kv, ok := e.(*ast.KeyValueExpr); ok {
			if id, ok := kv.Key.(*ast.Ident); ok && id.Name == name {
				return kv.Value
			}
		}
	}
	return nil
}

// No code outside tests switches TLS verification off, except where it
// verifies the peer itself.
func TestNoInsecureSkipVerifyOutsideTests(t *testing.T) {
	for path, f := range sources(t) {
		insecure := false
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.KeyValueExpr:
				if id, ok := n.Key.(*ast.Ident); ok && id.Name == "InsecureSkipVerify" {
					if v, ok := n.Value.(*ast.Ident); !ok || v.Name != "false" {
						insecure = true
					}
				}
			case *ast.SelectorExpr:
				if n.Sel.Name == "InsecureSkipVerify" {
					insecure = true
				}
			}
			return true
		})
		if !insecure {
			continue
		}
		if _, ok := insecureAllowed[path]; !ok {
			t.Errorf("%s sets InsecureSkipVerify", path)
			continue
		}
		verifies := false
		tlsConfigLiterals(f, func(lit *ast.CompositeLit) {
			if field(lit, "InsecureSkipVerify") != nil && field(lit, "VerifyConnection") != nil {
				verifies = true
			}
		})
		if !verifies {
			t.Errorf("%s sets InsecureSkipVerify without a VerifyConnection in the same tls.Config", path)
		}
	}
}

// Every tls.Config built outside tests asks for TLS 1.2 at least.
func TestTLSConfigsSetMinVersion(t *testing.T) {
	for path, f := range sources(t) {
		tlsConfigLiterals(f, func(lit *ast.CompositeLit) {
			v := field(lit, "MinVersion")
			if v == nil {
				t.Errorf("%s: a tls.Config without MinVersion", path)
				return
			}
			if sel, ok := v.(*ast.SelectorExpr); ok && (sel.Sel.Name == "VersionTLS10" || sel.Sel.Name == "VersionTLS11" || sel.Sel.Name == "VersionSSL30") {
				t.Errorf("%s: tls.Config with MinVersion %s", path, sel.Sel.Name)
			}
		})
	}
}
