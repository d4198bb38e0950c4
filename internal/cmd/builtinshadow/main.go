// Command builtinshadow reports declarations that shadow a predeclared
// identifier (len, max, string, error, new, ...), which compile but make the
// next reader — or the next edit that needs the builtin — stumble. It is part
// of `make lint`.
//
// Usage: builtinshadow DIR... (each walked recursively; testdata, vendor and
// dot-directories are skipped). It exits 1 if it reports anything.
package main

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"go/types"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

func main() {
	fset := token.NewFileSet()
	found := 0
	for _, root := range os.Args[1:] {
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				n := d.Name()
				if path != root && (n == "testdata" || n == "vendor" || strings.HasPrefix(n, ".")) {
					return filepath.SkipDir
				}
				return nil
			}
			if !strings.HasSuffix(path, ".go") {
				return nil
			}
			f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
			if err != nil {
				return err
			}
			for _, id := range shadowing(f) {
				fmt.Printf("%s: %q shadows the predeclared identifier\n", fset.Position(id.Pos()), id.Name)
				found++
			}
			return nil
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, "builtinshadow:", err)
			os.Exit(2)
		}
	}
	if found > 0 {
		os.Exit(1)
	}
}

// shadowing returns the identifiers that f declares (variables, constants,
// types, functions, parameters and results) under a predeclared name.
func shadowing(f *ast.File) []*ast.Ident {
	var out []*ast.Ident
	check := func(ids ...*ast.Ident) {
		for _, id := range ids {
			if id != nil && id.Name != "_" && types.Universe.Lookup(id.Name) != nil {
				out = append(out, id)
			}
		}
	}
	fields := func(fl *ast.FieldList) {
		if fl == nil {
			return
		}
		for _, f := range fl.List {
			check(f.Names...)
		}
	}
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.FuncDecl:
			if n.Recv == nil {
				check(n.Name)
			}
			fields(n.Recv)
		case *ast.FuncType:
			fields(n.TypeParams)
			fields(n.Params)
			fields(n.Results)
		case *ast.TypeSpec:
			check(n.Name)
			fields(n.TypeParams)
		case *ast.ValueSpec:
			check(n.Names...)
		case *ast.AssignStmt:
			if n.Tok == token.DEFINE {
				for _, e := range n.Lhs {
					if id, ok := e.(*ast.Ident); ok {
						check(id)
					}
				}
			}
		case *ast.RangeStmt:
			if n.Tok == token.DEFINE {
				for _, e := range []ast.Expr{n.Key, n.Value} {
					if id, ok := e.(*ast.Ident); ok {
						check(id)
					}
				}
			}
		}
		return true
	})
	return out
}
