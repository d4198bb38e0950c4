package config

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/BurntSushi/toml"
)

// MinKeyLen is the shortest cluster key accepted, in bytes (after the
// trailing whitespace is removed).
const MinKeyLen = 16

// GenKeyLen is the size of a key written by GenerateKey: 32 random bytes,
// written as 64 hexadecimal digits.
const GenKeyLen = 32

// ErrKeyFile is wrapped by every refusal of a key file.
var ErrKeyFile = errors.New("key file refused")

// ReadKey reads a cluster key file: its bytes with trailing whitespace (a
// final newline) removed. It refuses a file that is not a regular file, that
// group or others may read or write (the key authenticates every packet: a
// local user who reads it can forge masters), or that is shorter than
// MinKeyLen. Every error wraps ErrKeyFile and names the file and the reason.
func ReadKey(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKeyFile, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrKeyFile, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s: not a regular file", ErrKeyFile, path)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s: mode %04o lets group or others read it; run chmod 600 %s (or make a new one with fmagent -genkey)", ErrKeyFile, path, perm, path)
	}
	b := make([]byte, 4096)
	n, err := f.Read(b)
	if err != nil && n == 0 {
		return nil, fmt.Errorf("%w: %s: %d bytes, at least %d needed", ErrKeyFile, path, 0, MinKeyLen)
	}
	k := []byte(strings.TrimRight(string(b[:n]), " \t\r\n"))
	if len(k) < MinKeyLen {
		return nil, fmt.Errorf("%w: %s: %d bytes, at least %d needed", ErrKeyFile, path, len(k), MinKeyLen)
	}
	return k, nil
}

// GenerateKey writes a new random cluster key to path with mode 0600. It
// refuses to overwrite an existing file (O_EXCL): replacing a key is a key
// change-over (docs/security.md), never an accident.
func GenerateKey(path string) error {
	var raw [GenKeyLen]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return fmt.Errorf("genkey: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("genkey: %w", err)
	}
	// The umask cannot widen 0600, but a pre-set ACL default could: be sure.
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("genkey: %w", err)
	}
	if _, err := f.WriteString(hex.EncodeToString(raw[:]) + "\n"); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("genkey: %w", err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return fmt.Errorf("genkey: %w", err)
	}
	return nil
}

// InsecureKey is the key used when no key_file is configured, which is
// allowed only when every network is loopback or insecure is set. It is
// derived from the cluster ID only, so anyone can compute it: it keeps
// clusters on one host apart, and authenticates nothing.
func InsecureKey(cluster uint32) []byte {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], cluster)
	h := sha256.Sum256(append([]byte("fmagent: no key file, unauthenticated cluster "), b[:]...))
	return h[:]
}

// Keys returns the key to seal with and the further keys to accept (a key
// change-over), read from key_file and accept_key_files. Without key_file it
// returns InsecureKey when that is allowed (every network loopback, or
// insecure set) and an error otherwise. unauthenticated reports that the
// cluster key is not secret.
func (c *Config) Keys() (key []byte, accept [][]byte, unauthenticated bool, err error) {
	if c.KeyFile == "" {
		if !c.Insecure {
			for _, n := range c.Networks {
				if !IsLoopback(n.Interface) {
					return nil, nil, false, &Error{Key: "networks." + n.Name + ".interface", Value: tomlValue(n.Interface),
						Reason: "is not loopback and no key_file is set: anyone on the network could forge packets; write a key with 'fmagent -genkey FILE' and set key_file (or set insecure = true)"}
				}
			}
		}
		if len(c.AcceptKeyFiles) > 0 {
			return nil, nil, false, &Error{Key: "accept_key_files", Reason: "is set without key_file"}
		}
		return InsecureKey(c.ClusterID), nil, true, nil
	}
	if key, err = ReadKey(c.KeyFile); err != nil {
		return nil, nil, false, &Error{Key: "key_file", Value: tomlValue(c.KeyFile), Reason: err.Error(), err: err}
	}
	for i, p := range c.AcceptKeyFiles {
		k, err := ReadKey(p)
		if err != nil {
			return nil, nil, false, &Error{Key: fmt.Sprintf("accept_key_files[%d]", i), Value: tomlValue(p), Reason: err.Error(), err: err}
		}
		accept = append(accept, k)
	}
	return key, accept, false, nil
}

// IsLoopback reports whether the named interface is this host's loopback
// device (by its flags; "lo" when the host cannot be asked).
func IsLoopback(name string) bool {
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return name == "lo"
	}
	return ifi.Flags&net.FlagLoopback != 0
}

// CheckHost checks what the configuration needs from this host and that
// Validate cannot see: the networks' interfaces exist, and the keys (key
// files readable by their owner only and long enough, or no key only where
// that is allowed). Errors are *Error, joined.
func (c *Config) CheckHost() error {
	var errs []error
	for _, n := range c.Networks {
		if n.Interface == "" {
			continue // Validate's
		}
		if _, err := net.InterfaceByName(n.Interface); err != nil {
			errs = append(errs, &Error{Key: "networks." + n.Name + ".interface", Value: tomlValue(n.Interface), Reason: "no such interface on this host"})
		}
	}
	if len(errs) == 0 {
		if _, _, _, err := c.Keys(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// positionIn sets the file and position of every *Error joined in err, for
// errors found after the file was loaded (CheckHost).
func positionIn(file string, err error) {
	data, rerr := os.ReadFile(file)
	if rerr != nil {
		return
	}
	md, derr := toml.Decode(string(data), &map[string]any{})
	if derr != nil {
		return
	}
	locate(err, func(e *Error) *Error {
		e.File = file
		e.Line, e.Col = keyPosition(string(data), &md, e.Key)
		return e
	})
}
