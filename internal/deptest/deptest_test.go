// Package deptest holds the dependency rules of the pure packages (in the
// style of tailscale's tstest/deptest): the protocol logic never touches the
// network, the file system, the clock or a random source by itself, so the
// simulator sees every decision and can replay any seed (docs/ARCHITECTURE.md).
package deptest

import (
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const module = "github.com/fmagent/fmagent"

// pure are the packages that must stay pure, with every package of this
// module they depend on.
var pure = []string{"agent/core", "elect", "wire", "agent/table"}

// forbiddenImports may not be imported by a pure package or by any package
// of this module it depends on.
var forbiddenImports = map[string]string{
	"net":                   "the network",
	"os":                    "the file system and the process",
	"os/exec":               "other processes",
	"syscall":               "the kernel",
	"golang.org/x/sys/unix": "the kernel",
	"math/rand":             "a random source",
	"math/rand/v2":          "a random source",
	"crypto/rand":           "a random source",
	"log":                   "global output",
	"log/slog":              "global output (events are outputs of the core)",
}

// forbiddenCalls are functions of package time that read the clock or
// sleep; a pure package gets the time as an input.
var forbiddenCalls = map[string]bool{
	"Now": true, "Since": true, "Until": true, "Sleep": true, "After": true,
	"AfterFunc": true, "NewTimer": true, "NewTicker": true, "Tick": true,
}

type listed struct {
	ImportPath string
	Dir        string
	GoFiles    []string
	Imports    []string
	Deps       []string
}

func goList(t *testing.T, args ...string) []listed {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list", "-json"}, args...)...)
	cmd.Dir = "../.."
	out, err := cmd.Output()
	require.NoError(t, err, "go list %v", args)
	var pkgs []listed
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p listed
		require.NoError(t, dec.Decode(&p))
		pkgs = append(pkgs, p)
	}
	return pkgs
}

func TestPurePackages(t *testing.T) {
	var roots []string
	for _, p := range pure {
		roots = append(roots, module+"/"+p)
	}
	// Every package of this module that a pure package depends on is held
	// to the same rules.
	check := map[string]bool{}
	for _, p := range goList(t, roots...) {
		check[p.ImportPath] = true
		for _, d := range p.Deps {
			if strings.HasPrefix(d, module+"/") {
				check[d] = true
			}
		}
	}
	var paths []string
	for p := range check {
		paths = append(paths, p)
	}
	pkgs := goList(t, paths...)
	require.NotEmpty(t, pkgs)
	for _, p := range pkgs {
		for _, imp := range p.Imports {
			if why, bad := forbiddenImports[imp]; bad {
				t.Errorf("%s imports %s (%s): a pure package gets that as an input", p.ImportPath, imp, why)
			}
		}
		fset := token.NewFileSet()
		for _, name := range p.GoFiles {
			f, err := parser.ParseFile(fset, filepath.Join(p.Dir, name), nil, parser.SkipObjectResolution)
			require.NoError(t, err)
			timeName := ""
			for _, is := range f.Imports {
				if strings.Trim(is.Path.Value, `"`) == "time" {
					timeName = "time"
					if is.Name != nil {
						timeName = is.Name.Name
					}
				}
			}
			if timeName == "" {
				continue
			}
			ast.Inspect(f, func(n ast.Node) bool {
				sel, ok := n.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				if x, ok := sel.X.(*ast.Ident); ok && x.Name == timeName && forbiddenCalls[sel.Sel.Name] {
					t.Errorf("%s: %s uses time.%s: a pure package gets the time as an input",
						fset.Position(sel.Pos()), p.ImportPath, sel.Sel.Name)
				}
				return true
			})
		}
	}
}

// TestRulesBite makes sure the check itself works: a package known to use
// the network and the clock is caught.
func TestRulesBite(t *testing.T) {
	pkgs := goList(t, module+"/transport")
	require.Len(t, pkgs, 1)
	hit := false
	for _, imp := range pkgs[0].Imports {
		if _, bad := forbiddenImports[imp]; bad {
			hit = true
		}
	}
	require.True(t, hit, "transport imports the network; the rule should see it")
}
