package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/fmagent/fmagent/api"
	"github.com/fmagent/fmagent/version"
)

// The version command.

// versionInfo is "fmctl version -o json".
type versionInfo struct {
	Version  string `json:"version"`  // fmctl's version (version.Version, stamped by the Makefile)
	Commit   string `json:"commit"`   // VCS revision, "" if unknown
	Go       string `json:"go"`       // Go version it was built with
	Platform string `json:"platform"` // GOOS/GOARCH
	Protocol int    `json:"protocol"` // client API protocol version spoken
}

func buildVersion() versionInfo {
	b := version.Get()
	return versionInfo{Version: b.Version, Commit: b.Commit, Go: b.Go, Platform: b.Platform, Protocol: int(api.Version)}
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
