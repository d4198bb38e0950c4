// Package version is the version stamped into fmagent's binaries. The
// Makefile sets it from `git describe`:
//
//	go build -ldflags "-X github.com/fmagent/fmagent/version.Version=v1.2.3"
//
// A build without the stamp (go build, go test) falls back to what the Go
// toolchain records: the module version, else the VCS revision, else
// "(devel)".
package version

import (
	"runtime"
	"runtime/debug"
)

// Version is set at link time; empty in an unstamped build.
var Version string

// Info describes a build.
type Info struct {
	Version  string `json:"version"`  // stamped version, or the fallback
	Commit   string `json:"commit"`   // VCS revision ("-dirty" if modified), "" if unknown
	Go       string `json:"go"`       // Go version it was built with
	Platform string `json:"platform"` // GOOS/GOARCH
}

// Get returns the running binary's build information.
func Get() Info {
	v := Info{Version: Version, Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v.Version = bi.Main.Version
		}
		modified := false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				v.Commit = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if modified && v.Commit != "" {
			v.Commit += "-dirty"
		}
	}
	if v.Version == "" {
		v.Version = "(devel)"
		if len(v.Commit) >= 12 {
			v.Version = "(devel " + v.Commit[:12] + ")"
		}
	}
	return v
}

// String is the version alone, e.g. "v1.2.3" or "(devel)".
func String() string { return Get().Version }
