package config

import (
	"os"

	"github.com/BurntSushi/toml"
)

// Locate sets e's File to file and its Line and Col to where e.Key is
// written in that file (0 when the key is not in it: a default or a flag).
// For errors found after Load, by checks that need more than the file
// (fmagent -check-config: the key file, the plugins' arguments).
func Locate(file string, e *Error) *Error {
	e.File = file
	data, err := os.ReadFile(file)
	if err != nil {
		return e
	}
	md, err := toml.Decode(string(data), &map[string]any{})
	if err != nil {
		return e
	}
	e.Line, e.Col = keyPosition(string(data), &md, e.Key)
	return e
}
