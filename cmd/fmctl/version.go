package main

import (
	"context"
	"flag"
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/fmagent/fmagent/api"
)

// The version command.

// version is fmctl's version; set it with
// -ldflags "-X main.version=v1.2.3". Empty: from the build info.
var version string

// versionInfo is "fmctl version -o json".
type versionInfo struct {
	Version  string `json:"version"`  // fmctl's version
	Commit   string `json:"commit"`   // VCS revision, "" if unknown
	Go       string `json:"go"`       // Go version it was built with
	Platform string `json:"platform"` // GOOS/GOARCH
	Protocol int    `json:"protocol"` // client API protocol version spoken
}

func buildVersion() versionInfo {
	v := versionInfo{
		Version:  version,
		Go:       runtime.Version(),
		Platform: runtime.GOOS + "/" + runtime.GOARCH,
		Protocol: int(api.Version),
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v.Version == "" && bi.Main.Version != "" {
			v.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				v.Commit = s.Value
			case "vcs.modified":
				if s.Value == "true" && v.Commit != "" {
					v.Commit += "-dirty"
				}
			}
		}
	}
	if v.Version == "" {
		v.Version = "(devel)"
	}
	return v
}

func setupVersion(fs *flag.FlagSet) runFunc {
	return func(ctx context.Context, e *env, _ []string) error {
		v := buildVersion()
		if e.json() {
			return writeJSON(e.stdout, v)
		}
		commit := ""
		if v.Commit != "" {
			commit = " commit " + v.Commit
		}
		_, err := fmt.Fprintf(e.stdout, "fmctl %s%s (%s %s, client protocol %d)\n",
			v.Version, commit, v.Go, v.Platform, v.Protocol)
		return err
	}
}
