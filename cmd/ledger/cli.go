package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
)

// command is one subcommand.
type command struct {
	name    string
	summary string
	usage   string // first line of -h
	run     func(ctx context.Context, env *cliEnv, args []string) error
}

// cliEnv is the process environment a command runs in (injected for tests).
type cliEnv struct {
	stdout, stderr io.Writer
	getenv         func(string) string
}

// allCommands returns the subcommands by name. Built per Main call: no
// global state, so Main may run on several goroutines at once (tests do).
func allCommands() map[string]*command {
	cs := map[string]*command{}
	for _, c := range []*command{serveCommand(), demoCommand(), rebuildCommand(), loadgenCommand()} {
		cs[c.name] = c
	}
	return cs
}

// errUsage marks a bad command line (exit code 2).
var errUsage = errors.New("usage")

// Main runs the command line args and returns the exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	commands := allCommands()
	env := &cliEnv{stdout: stdout, stderr: stderr, getenv: getenv}
	if len(args) == 0 {
		printHelp(stderr, commands)
		return 2
	}
	name := args[0]
	if name == "help" || name == "-h" || name == "--help" {
		if len(args) > 1 && args[1] != "help" {
			if c, ok := commands[args[1]]; ok {
				c.run(ctx, env, []string{"-h"})
				return 0
			}
			fmt.Fprintf(stderr, "ledger: unknown command %q\n\n", args[1])
			printHelp(stderr, commands)
			return 2
		}
		printHelp(stdout, commands)
		return 0
	}
	c, ok := commands[name]
	if !ok {
		fmt.Fprintf(stderr, "ledger: unknown command %q\n\n", name)
		printHelp(stderr, commands)
		return 2
	}
	err := c.run(ctx, env, args[1:])
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "ledger %s: %v\n", name, err)
		return 2
	}
	fmt.Fprintf(stderr, "ledger %s: %v\n", name, err)
	return 1
}

func printHelp(w io.Writer, commands map[string]*command) {
	fmt.Fprintln(w, "ledger: an event-sourced order ledger for WeChat Pay.")
	fmt.Fprintln(w, "\nUsage: ledger <command> [flags]\n\nCommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-8s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "  help     ledger help <command> explains a command")
	fmt.Fprintln(w, "\nQuick start: go run ./cmd/ledger demo")
}

// newFlagSet returns a flag set that prints the command's usage on -h.
func newFlagSet(c *command, env *cliEnv) *flag.FlagSet {
	fs := flag.NewFlagSet("ledger "+c.name, flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	fs.Usage = func() {
		out := env.stdout
		fmt.Fprintf(out, "Usage: ledger %s\n\n%s\n\nFlags:\n", c.usage, strings.TrimSpace(c.summary))
		fs.SetOutput(out)
		fs.PrintDefaults()
		fs.SetOutput(env.stderr)
	}
	return fs
}

// parse parses args; unknown flags and stray arguments are usage errors.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	return nil
}

// storeFlags are shared by every command that opens the ledger.
type storeFlags struct {
	data  string
	store string
}

func (s *storeFlags) register(fs *flag.FlagSet, env *cliEnv) {
	def := env.getenv("LEDGER_DATA")
	if def == "" {
		def = "./ledger-data"
	}
	fs.StringVar(&s.data, "data", def, "data folder: the embedded event store (events.db) and the read model (readmodel.db) live here (env LEDGER_DATA)")
	fs.StringVar(&s.store, "store", env.getenv("LEDGER_STORE"),
		"event store: empty for the embedded SQLite file in --data, or an EventStoreDB/KurrentDB connection string esdb://host:2113?tls=false (env LEDGER_STORE)")
}

// logFlags configure the logger.
type logFlags struct {
	format string
	level  string
}

func (l *logFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&l.format, "log-format", "text", "log format: text or json")
	fs.StringVar(&l.level, "log-level", "info", "log level: debug, info, warn, error")
}

func (l *logFlags) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(l.level)); err != nil {
		return nil, fmt.Errorf("%w: --log-level %q (debug, info, warn or error)", errUsage, l.level)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch l.format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("%w: --log-format %q (text or json)", errUsage, l.format)
}
