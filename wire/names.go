package wire

import (
	"errors"
	"fmt"
	"unicode"
	"unicode/utf8"
)

// ErrName is wrapped by every refusal of CheckName.
var ErrName = errors.New("bad entity name")

// CheckName enforces the rules every entity name follows, on every node and
// in every client, so that two names that look the same are the same name:
//
//   - valid UTF-8 (a name is never rewritten: U+FFFD, what decoders put in
//     place of invalid bytes, is refused too), at most MaxName bytes;
//   - segments separated by '/', none empty (no leading, trailing or
//     doubled '/');
//   - no control, format (zero-width, BOM, bidi embeddings, overrides and
//     isolates: category Cf), private-use, surrogate or unassigned
//     characters, and no space other than U+0020;
//   - no combining marks: names are NFC without needing the Unicode
//     normalization tables, conservatively, since a precomposed character
//     and its decomposed spelling look the same (é vs e + U+0301);
//   - no segment mixing Latin, Greek and Cyrillic letters (the look-alikes
//     of "nоde" with a Cyrillic о).
//
// CheckName allocates nothing when the name is good.
func CheckName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty", ErrName)
	}
	if len(name) > MaxName {
		return fmt.Errorf("%w: %d bytes, the limit is %d", ErrName, len(name), MaxName)
	}
	if !utf8.ValidString(name) {
		return fmt.Errorf("%w: not valid UTF-8", ErrName)
	}
	const (
		latin = 1 << iota
		greek
		cyrillic
	)
	scripts := 0
	segStart := 0
	for i, r := range name {
		if r == '/' {
			if i == segStart {
				return fmt.Errorf("%w: %q has an empty segment", ErrName, name)
			}
			segStart, scripts = i+1, 0
			continue
		}
		if r < 0x80 {
			if r < 0x20 || r == 0x7f {
				return fmt.Errorf("%w: control character %U", ErrName, r)
			}
			if 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' {
				scripts |= latin
			}
			continue
		}
		switch {
		case r == utf8.RuneError:
			return fmt.Errorf("%w: U+FFFD (a replaced invalid byte)", ErrName)
		case unicode.In(r, unicode.Cc, unicode.Cf, unicode.Co, unicode.Cs) || !unicode.In(r, unicode.L, unicode.M, unicode.N, unicode.P, unicode.S, unicode.Zs):
			return fmt.Errorf("%w: control, format, private or unassigned character %U", ErrName, r)
		case unicode.Is(unicode.Zs, r):
			return fmt.Errorf("%w: space character %U (only U+0020 is allowed)", ErrName, r)
		case unicode.Is(unicode.M, r):
			return fmt.Errorf("%w: combining mark %U (write the precomposed character)", ErrName, r)
		case unicode.Is(unicode.Latin, r):
			scripts |= latin
		case unicode.Is(unicode.Greek, r):
			scripts |= greek
		case unicode.Is(unicode.Cyrillic, r):
			scripts |= cyrillic
		}
		if scripts&(scripts-1) != 0 {
			return fmt.Errorf("%w: segment %q mixes Latin, Greek or Cyrillic letters (look-alike)", ErrName, name[segStart:])
		}
	}
	if segStart == len(name) {
		return fmt.Errorf("%w: %q has an empty segment", ErrName, name)
	}
	return nil
}
