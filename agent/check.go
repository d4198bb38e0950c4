package agent

import (
	"fmt"

	"github.com/fmagent/fmagent/agent/plugin"
	"github.com/fmagent/fmagent/config"
)

// Check finds what a loaded and validated configuration would still fail on
// at start without opening anything: the key file (readable, long enough)
// and the plugin chain (every plugin known, its arguments valid). It is
// fmagent -check-config's second half (config.Load is the first).
func Check(cfg *config.Config) []error {
	var errs []error
	if _, err := loadKey(cfg.KeyFile); err != nil {
		errs = append(errs, &config.Error{Key: "key_file", Value: fmt.Sprintf("%q", cfg.KeyFile), Reason: err.Error()})
	}
	for i, p := range cfg.Plugins {
		if _, err := plugin.New(p.Name, p.Args); err != nil {
			errs = append(errs, &config.Error{Key: fmt.Sprintf("plugins[%d]", i), Value: fmt.Sprintf("%q", p.Name), Reason: err.Error()})
		}
	}
	return errs
}
