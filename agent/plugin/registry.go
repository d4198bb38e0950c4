package plugin

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"
)

// Factory builds a plugin from its configuration arguments. It must reject
// arguments it does not know, so a typo in the configuration is an error at
// start-up rather than a silently ignored setting.
type Factory func(args map[string]string) (Plugin, error)

// Spec names one plugin of a chain and its arguments, as the configuration
// gives them.
type Spec struct {
	Name string
	Args map[string]string
}

// ErrUnknown is what an UnknownError matches with errors.Is.
var ErrUnknown = errors.New("plugin: unknown plugin")

// UnknownError is New's error for a name nothing registered: the build does
// not include that plugin.
type UnknownError struct {
	Name string
}

func (e *UnknownError) Error() string {
	return fmt.Sprintf("plugin: unknown plugin %q (registered: %v)", e.Name, Names())
}

// Is makes errors.Is(err, ErrUnknown) true.
func (e *UnknownError) Is(target error) bool { return target == ErrUnknown }

// The registry is filled from init() functions, before main, and read when
// the configuration is loaded. The mutex is only there so tests and tools
// that build chains in parallel stay race-free; nothing here is on a hot path.
var (
	regMu     sync.RWMutex
	factories = map[string]Factory{}
)

// Register makes a plugin available under name. Call it from init(). It
// panics on an empty name, a nil factory or a name already registered: two
// plugins claiming one name is a build mistake that must not start.
func Register(name string, f Factory) {
	if name == "" || f == nil {
		panic("plugin: Register with an empty name or a nil factory")
	}
	regMu.Lock()
	defer regMu.Unlock()
	if _, dup := factories[name]; dup {
		panic(fmt.Sprintf("plugin: %q registered twice", name))
	}
	factories[name] = f
}

// New builds the plugin registered under name with args. An unknown name is
// an *UnknownError.
func New(name string, args map[string]string) (Plugin, error) {
	regMu.RLock()
	f, ok := factories[name]
	regMu.RUnlock()
	if !ok {
		return nil, &UnknownError{Name: name}
	}
	p, err := f(args)
	if err != nil {
		return nil, fmt.Errorf("plugin %s: %w", name, err)
	}
	return p, nil
}

// Names lists the registered plugins, sorted.
func Names() []string {
	regMu.RLock()
	defer regMu.RUnlock()
	names := make([]string, 0, len(factories))
	for n := range factories {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// NewChain builds the chain specs describe, in order. The same plugin may
// appear more than once with different arguments. An empty chain is an
// error: it would ignore every report, node deaths included.
func NewChain(specs []Spec) (*Chain, error) {
	if len(specs) == 0 {
		return nil, errors.New("plugin: empty chain")
	}
	plugins := make([]Plugin, 0, len(specs))
	for i, s := range specs {
		p, err := New(s.Name, s.Args)
		if err != nil {
			return nil, fmt.Errorf("plugin chain entry %d: %w", i, err)
		}
		plugins = append(plugins, p)
	}
	return ChainOf(plugins...), nil
}

// DefaultSpecs is the default chain, in order:
//
//  1. heartbeat: the master's own failure detector is authoritative about
//     nodes and links, so its reports are settled first and nothing after it
//     can second-guess a node death.
//  2. process: an owner speaking for its own entity (a process it saw exit)
//     is authoritative too, and needs no corroboration.
//  3. threshold: fault reports from clients are opinions; enough of them from
//     enough distinct nodes is a fact, and the entity goes down.
//  4. blame: one node alone accusing a healthy entity, repeatedly, while
//     nobody agrees, is more likely broken itself; it gets the alarm. It runs
//     after threshold so that corroborated reports never blame anyone.
//  5. passthrough: whatever is left is taken at face value: raises, clears,
//     owner up/down, and an uncorroborated fault as a minor alarm (a
//     candidate, not a verdict of down).
func DefaultSpecs() []Spec {
	return []Spec{
		{Name: "heartbeat"},
		{Name: "process"},
		{Name: "threshold"},
		{Name: "blame"},
		{Name: "passthrough"},
	}
}

// DefaultChain builds DefaultSpecs. The built-ins take no required arguments,
// so this cannot fail unless the build is broken, and then it panics.
func DefaultChain() *Chain {
	c, err := NewChain(DefaultSpecs())
	if err != nil {
		panic(err)
	}
	return c
}

// args reads a plugin's arguments, remembering which it used so that done
// can reject the rest.
type args struct {
	m    map[string]string
	used []string
	err  error
}

func newArgs(m map[string]string) *args { return &args{m: m} }

// int reads a non-negative integer argument (def if absent).
func (a *args) int(key string, def int) int {
	s, ok := a.get(key)
	if !ok {
		return def
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < 0 {
		a.fail(fmt.Errorf("argument %s=%q: want a non-negative integer", key, s))
		return def
	}
	return v
}

// duration reads a positive duration argument in nanoseconds: a Go duration
// with a unit ("10s", "250ms"). A bare number is refused: window = "10"
// read as 10 ns would make the plugin count nothing, without a word.
func (a *args) duration(key string, def int64) int64 {
	s, ok := a.get(key)
	if !ok {
		return def
	}
	if _, err := strconv.ParseFloat(s, 64); err == nil {
		a.fail(fmt.Errorf("argument %s=%q: want a duration with a unit, such as \"10s\" (a bare number would be nanoseconds)", key, s))
		return def
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		a.fail(fmt.Errorf("argument %s=%q: want a positive duration such as 10s", key, s))
		return def
	}
	return int64(d)
}

// bool reads a boolean argument (def if absent).
func (a *args) bool(key string, def bool) bool {
	s, ok := a.get(key)
	if !ok {
		return def
	}
	v, err := strconv.ParseBool(s)
	if err != nil {
		a.fail(fmt.Errorf("argument %s=%q: want true or false", key, s))
		return def
	}
	return v
}

func (a *args) get(key string) (string, bool) {
	a.used = append(a.used, key)
	s, ok := a.m[key]
	return s, ok
}

func (a *args) fail(err error) {
	if a.err == nil {
		a.err = err
	}
}

// done returns the first error, or an error naming an argument nobody read.
func (a *args) done() error {
	if a.err != nil {
		return a.err
	}
	var unknown []string
	for k := range a.m {
		if !slices.Contains(a.used, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return fmt.Errorf("unknown arguments %v (known: %v)", unknown, a.used)
	}
	return nil
}
