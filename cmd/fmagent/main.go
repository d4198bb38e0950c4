// Command fmagent is the cluster fault manager's daemon: one runs on every
// node (DESIGN.md). It keeps the cluster's entity table with its peers over
// two networks, publishes it in shared memory and serves local clients on a
// unix socket.
//
//	fmagent [-config PATH] [-log-level debug|info|warn|error] [overrides]
//	fmagent -genkey FILE
//
// The overrides (-node, -priority, -iface-a, -iface-b, -profile, -socket,
// -shm, -state-dir, -allow-alone) take precedence over the file. Without
// -config the built-in defaults are used and the node may form a cluster
// alone (a single-node cluster on loopback).
//
// Exit status: 0 after SIGINT or SIGTERM (clean shutdown), 1 when the agent
// fails, 2 for bad usage or a bad configuration (one line per problem:
// file:line: key: reason).
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
	"strings"
	"syscall"

	"github.com/fmagent/fmagent/agent"
	"github.com/fmagent/fmagent/config"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("fmagent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fl := config.RegisterFlags(fs)
	level := fs.String("log-level", "info", "log level: debug, info, warn or error")
	genkey := fs.String("genkey", "", "write a new random cluster key to `FILE` (mode 0600, never over an existing file) and exit")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: fmagent [-config PATH] [-log-level LEVEL] [overrides]\n\n")
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
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		fmt.Fprintf(stderr, "fmagent: -log-level %q: want debug, info, warn or error\n", *level)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lv}))

	cfg, err := fl.Load()
	if err == nil {
		err = fl.CheckHost(cfg)
	}
	if err != nil {
		printConfigError(stderr, err)
		return 2
	}
	if fl.ConfigPath == "" && !cfg.AllowAlone {
		// No configuration at all: a single-node cluster on loopback.
		cfg.AllowAlone = true
		log.Info("no -config: built-in defaults, allow_alone on (a single-node cluster on loopback)")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := agent.Run(ctx, cfg, log); err != nil {
		log.Error("fmagent failed", "err", err)
		return 1
	}
	return 0
}

// printConfigError prints one line per refused setting (config.Error gives
// file:line:col: key = value: reason).
func printConfigError(w io.Writer, err error) {
	for _, e := range config.Errors(err) {
		fmt.Fprintf(w, "fmagent: %s\n", strings.TrimPrefix(e.Error(), "config: "))
	}
}
