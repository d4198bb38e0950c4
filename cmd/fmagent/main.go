// Command fmagent is the cluster fault manager's daemon: one runs on every
// node (DESIGN.md). It keeps the cluster's entity table with its peers over
// two networks, publishes it in shared memory and serves local clients on a
// unix socket.
//
//	fmagent [-config PATH] [-log-level debug|info|warn|error] [overrides]
//	fmagent -genkey FILE
//	fmagent -check-config PATH
//	fmagent -version
//
// The overrides (-node, -priority, -iface-a, -iface-b, -profile, -socket,
// -shm, -state-dir, -allow-alone) take precedence over the file. Without
// -config the built-in defaults are used and the node may form a cluster
// alone (a single-node cluster on loopback).
//
// Signals: SIGTERM and SIGINT stop the agent cleanly. SIGHUP reloads the
// file: the log level, the plugin chain (names and arguments) and the
// metrics endpoint change at once; every other key that changed is logged
// as needing a restart; a file with errors is logged and ignored (the agent
// keeps what it runs with). SIGABRT (systemd's watchdog) is logged, then
// dumps every goroutine's stack and ends the process. SIGPIPE on the log
// output (journald restarting) does not kill the agent.
//
// Exit status: 0 after SIGINT or SIGTERM (clean shutdown), 1 when the agent
// fails, 2 for bad usage or a bad configuration (one line per problem:
// file:line:col: key: reason). -check-config: 0 when the file is good, 1 when
// it is not (one line per problem), 2 for bad usage.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/fmagent/fmagent/agent"
	"github.com/fmagent/fmagent/config"
	"github.com/fmagent/fmagent/logq"
	"github.com/fmagent/fmagent/version"
)

// The agent's log queue (logq): at most logQueueBytes waiting, written out
// logFlushEvery after the first line queued (so at most once that often),
// and at exit for at most logCloseWait.
const (
	logQueueBytes = 1 << 20
	logFlushEvery = 50 * time.Millisecond
	logCloseWait  = 2 * time.Second
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("fmagent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fl := config.RegisterFlags(fs)
	level := fs.String("log-level", "", "log level: debug, info, warn or error (overrides log_level; default info)")
	showVersion := fs.Bool("version", false, "print the version and exit")
	checkConfig := fs.String("check-config", "", "check the config file `PATH` (and the flags given with it) and exit: 0 good, 1 not")
	genkey := fs.String("genkey", "", "write a new random cluster key to `FILE` (mode 0600, never over an existing file) and exit")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: fmagent [-config PATH] [-log-level LEVEL] [overrides]\n       fmagent -check-config PATH\n       fmagent -version\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "fmagent: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return 2
	}
	if *genkey != "" {
		if err := config.GenerateKey(*genkey); err != nil {
			fmt.Fprintf(stderr, "fmagent: %v\n", err)
			return 1
		}
		fmt.Fprintf(stderr, "fmagent: wrote a new cluster key to %s (mode 0600); copy it to every node and set key_file\n", *genkey)
		return 0
	}
	if *showVersion {
		v := version.Get()
		commit := ""
		if v.Commit != "" {
			commit = " commit " + v.Commit
		}
		fmt.Fprintf(stdout, "fmagent %s%s (%s %s)\n", v.Version, commit, v.Go, v.Platform)
		return 0
	}
	if *level != "" {
		var lv slog.Level
		if err := lv.UnmarshalText([]byte(*level)); err != nil {
			fmt.Fprintf(stderr, "fmagent: -log-level %q: want debug, info, warn or error\n", *level)
			return 2
		}
	}
	if *checkConfig != "" {
		if fl.ConfigPath != "" && fl.ConfigPath != *checkConfig {
			fmt.Fprintf(stderr, "fmagent: -check-config %s and -config %s: give one file\n", *checkConfig, fl.ConfigPath)
			return 2
		}
		return check(fl, *checkConfig, stdout, stderr)
	}

	// Catch SIGHUP (and the rest handleSignals serves) before anything
	// slow: its default action would end the agent silently.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGPIPE, syscall.SIGABRT, syscall.SIGUSR1, syscall.SIGUSR2)
	defer signal.Stop(sigs)

	cfg, err := fl.Load()
	if err == nil {
		err = fl.CheckHost(cfg)
	}
	if err != nil {
		printConfigError(stderr, err)
		return 2
	}
	lv := new(slog.LevelVar)
	setLevel(lv, cfg, *level)
	// The log is queued and written by a thread of its own: the real-time
	// loop logs too, and must never wait for the journal (logq says why).
	logOut := logq.New(stderr, logQueueBytes, logFlushEvery)
	defer logOut.Close(logCloseWait)
	var log *slog.Logger
	if cfg.LogFormat == config.LogJSON {
		log = slog.New(slog.NewJSONHandler(logOut, &slog.HandlerOptions{Level: lv}))
	} else {
		log = slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: lv}))
	}
	logOut.OnDrop(func(n uint64) {
		log.Warn("log lines dropped: the log output (stderr, the journal) did not take them in time", "lines", n)
	})
	log.Info("fmagent", "version", version.String(), "config", fl.ConfigPath)
	if fl.ConfigPath == "" && !cfg.AllowAlone {
		// No configuration at all: a single-node cluster on loopback.
		cfg.AllowAlone = true
		log.Info("no -config: built-in defaults, allow_alone on (a single-node cluster on loopback)")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	reload := make(chan *config.Config, 1)
	go handleSignals(ctx, sigs, fl, *level, lv, reload, log, func() { logOut.Close(logCloseWait) })
	if err := agent.RunReloadable(ctx, cfg, log, reload); err != nil {
		log.Error("fmagent failed", "err", err)
		return 1
	}
	return 0
}

// setLevel sets lv from -log-level when given, else from the file.
func setLevel(lv *slog.LevelVar, cfg *config.Config, flagLevel string) {
	s := cfg.LogLevel
	if flagLevel != "" {
		s = flagLevel
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err == nil {
		lv.Set(l)
	}
}

// check is -check-config: load and validate the file with the flags given,
// then what start would still refuse (the key file, the plugins' arguments).
func check(fl *config.Flags, path string, stdout, stderr io.Writer) int {
	fl.ConfigPath = path
	cfg, err := fl.Load()
	if err != nil {
		printConfigError(stderr, err)
		return 1
	}
	if errs := agent.Check(cfg); len(errs) > 0 {
		for _, e := range errs {
			var ce *config.Error
			if errors.As(e, &ce) {
				config.Locate(path, ce)
			}
			fmt.Fprintf(stderr, "fmagent: %v\n", e)
		}
		return 1
	}
	fmt.Fprintf(stdout, "%s: ok (node %d, cluster %d, profile %s: %v × %d, socket %s, state %s)\n",
		path, cfg.NodeID, cfg.ClusterID, cfg.Timing.Profile, cfg.Timing.Interval, cfg.Timing.Misses,
		cfg.Paths.Socket, cfg.Paths.StateDir)
	return 0
}

// handleSignals serves SIGHUP (reload), SIGPIPE (ignored: a restarted
// journald must not take the agent down with it) and SIGABRT (logged, then
// the runtime's stack dump) until ctx is done.
func handleSignals(ctx context.Context, sigs <-chan os.Signal, fl *config.Flags, flagLevel string, lv *slog.LevelVar, reload chan<- *config.Config, log *slog.Logger, closeLog func()) {
	for {
		var sig os.Signal
		select {
		case <-ctx.Done():
			return
		case sig = <-sigs:
		}
		switch sig {
		case syscall.SIGHUP:
			if fl.ConfigPath == "" {
				log.Warn("SIGHUP: no -config file to reload; nothing changed")
				continue
			}
			next, err := fl.Load()
			if err != nil {
				log.Error("SIGHUP: configuration refused; keeping the one in force", "err", oneLine(err))
				continue
			}
			old := lv.Level()
			setLevel(lv, next, flagLevel)
			if lv.Level() != old {
				log.Info("SIGHUP: log level changed", "from", old.String(), "to", lv.Level().String())
			}
			log.Info("SIGHUP: reloading", "config", fl.ConfigPath)
			select {
			case reload <- next:
			case <-ctx.Done():
				return
			}
		case syscall.SIGPIPE:
			// Writes to the broken pipe fail with EPIPE instead.
		case syscall.SIGUSR1, syscall.SIGUSR2:
			log.Warn("signal ignored", "signal", sig.String())
		case syscall.SIGABRT:
			log.Error("SIGABRT (systemd's watchdog when the agent stops notifying it): dumping every goroutine and exiting")
			closeLog() // the queued lines, this one last, before the dump
			debug.SetTraceback("all")
			signal.Reset(syscall.SIGABRT)
			syscall.Kill(os.Getpid(), syscall.SIGABRT)
			select {}
		}
	}
}

// oneLine joins a configuration error's lines with "; ".
func oneLine(err error) string {
	return strings.ReplaceAll(strings.TrimPrefix(err.Error(), "config: "), "\n", "; ")
}

// printConfigError prints one line per refused setting (config.Error gives
// file:line:col: key = value: reason).
func printConfigError(w io.Writer, err error) {
	for _, e := range config.Errors(err) {
		fmt.Fprintf(w, "fmagent: %s\n", strings.TrimPrefix(e.Error(), "config: "))
	}
}
