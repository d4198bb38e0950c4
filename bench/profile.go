package bench

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/fmagent/fmagent/config"
)

// Profile is a timing profile to measure: a name the agent knows (its
// interval and misses are then the config package's), or interval × misses
// given as "4msx5" (profile = "custom").
type Profile struct {
	Label    string        // as given
	Name     string        // the agent's profile name; "" for custom
	Interval time.Duration // the bound is Interval × Misses
	Misses   int
}

// Bound is the profile's detection bound.
func (p Profile) Bound() time.Duration { return p.Interval * time.Duration(p.Misses) }

// ErrProfile is a profile that cannot be parsed or that this build of
// the agent does not know.
var ErrProfile = errors.New("bench: bad profile")

// ParseProfiles parses a comma-separated list of profiles: "4msx5" (or
// "4ms×5") is interval × misses; anything else is a profile name the
// agent's config package must know.
func ParseProfiles(s string) ([]Profile, error) {
	var out []Profile
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		p, err := parseProfile(item)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: none in %q", ErrProfile, s)
	}
	return out, nil
}

func parseProfile(item string) (Profile, error) {
	norm := strings.ReplaceAll(item, "×", "x")
	if iv, m, ok := strings.Cut(norm, "x"); ok {
		d, err1 := time.ParseDuration(iv)
		n, err2 := strconv.Atoi(m)
		if err1 != nil || err2 != nil || d <= 0 || n < 1 {
			return Profile{}, fmt.Errorf("%w: %q: want INTERVALxMISSES, e.g. 4msx5", ErrProfile, item)
		}
		return Profile{Label: item, Interval: d, Misses: n}, nil
	}
	c := config.Default()
	if err := c.Override("timing.profile", item); err != nil {
		return Profile{}, fmt.Errorf("%w: %q: %v", ErrProfile, item, err)
	}
	if err := c.Validate(); err != nil && strings.Contains(err.Error(), "timing.profile") {
		return Profile{}, fmt.Errorf("%w: %q is not a profile of this agent: %v", ErrProfile, item, err)
	}
	return Profile{Label: item, Name: item, Interval: c.Timing.Interval, Misses: c.Timing.Misses}, nil
}
