package config

import (
	"errors"
	"os"
	"testing"
)

// FuzzLoad feeds arbitrary text to the config loader: it returns a config
// that validates, or errors that are all *Error naming the file; it never
// panics.
func FuzzLoad(f *testing.F) {
	if b, err := os.ReadFile("example.toml"); err == nil {
		f.Add(string(b))
	}
	f.Add("node_id = 3\n[timing]\nprofile = \"custom\"\ninterval = \"1ms\"\nmisses = 3\n")
	f.Add("[[plugins]]\nname = \"x\"\n[[api.grants]]\nusers = [\"0\"]\nops = [\"raise\"]\n")
	f.Add("key_file = \"/k\"\naccept_key_files = [\"/a\", \"b\"]\ninsecure = true\n")
	f.Fuzz(func(t *testing.T, data string) {
		c, err := parse("fuzz.toml", data)
		if err != nil {
			for _, e := range Errors(err) {
				var ce *Error
				if !errors.As(e, &ce) {
					t.Fatalf("error not a *config.Error: %T %v", e, e)
				}
				if ce.File != "fuzz.toml" {
					t.Fatalf("error without the file: %v", ce)
				}
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("parse returned a config that does not validate: %v", err)
		}
	})
}
