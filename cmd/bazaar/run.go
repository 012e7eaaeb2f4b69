package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
)

// command is one subcommand of the bazaar binary.
type command struct {
	name  string
	short string
	// run gets the flag set already parsed and the remaining arguments.
	run   func(ctx context.Context, env *environment, args []string) error
	flags func(fs *flag.FlagSet)
}

// environment is what every subcommand receives from run.
type environment struct {
	getenv func(string) string
	stdout io.Writer
	stderr io.Writer
	flags  *flag.FlagSet
}

// usageError is a mistake in the command line; it exits with status 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func exitCode(err error) int {
	var u usageError
	if errors.As(err, &u) {
		return 2
	}
	return 1
}

var commands = map[string]*command{}

func register(c *command) { commands[c.name] = c }

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	if len(args) < 2 || args[1] == "help" || args[1] == "-h" || args[1] == "--help" {
		if len(args) >= 3 && args[1] == "help" {
			if c, ok := commands[args[2]]; ok {
				return runCommand(ctx, c, []string{"-h"}, getenv, stdout, stderr)
			}
		}
		printUsage(stdout)
		if len(args) < 2 {
			return usageError{"no command given"}
		}
		return nil
	}
	c, ok := commands[args[1]]
	if !ok {
		return usageError{fmt.Sprintf("unknown command %q (run \"bazaar help\" for the list)", args[1])}
	}
	return runCommand(ctx, c, args[2:], getenv, stdout, stderr)
}

func runCommand(ctx context.Context, c *command, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bazaar "+c.name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	if c.flags != nil {
		c.flags(fs)
	}
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: bazaar %s [flags]\n\n%s\n", c.name, c.short)
		hasFlags := false
		fs.VisitAll(func(*flag.Flag) { hasFlags = true })
		if hasFlags {
			fmt.Fprintln(fs.Output(), "\nflags:")
			fs.PrintDefaults()
		}
		fmt.Fprintln(fs.Output(), "\nConfiguration comes from the environment; see README.md.")
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return usageError{err.Error()}
	}
	return c.run(ctx, &environment{getenv: getenv, stdout: stdout, stderr: stderr, flags: fs}, fs.Args())
}

func printUsage(w io.Writer) {
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("usage: bazaar <command> [flags]\n\ncommands:\n")
	for _, n := range names {
		fmt.Fprintf(&b, "  %-10s %s\n", n, commands[n].short)
	}
	b.WriteString("\nRun \"bazaar <command> -h\" for a command's flags.\n")
	fmt.Fprint(w, b.String())
}
