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
	// synopsis follows "usage: bazaar <name>" in the help; "[flags]" when
	// empty.
	synopsis string
	// detail, when set, follows the short line in the help.
	detail string
	// help, when set, prints the help of the action named in args (such as
	// "list" in "bazaar dlq list -h") and reports whether it knew it.
	help func(w io.Writer, args []string) bool
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
	// The flag package would print its error and the whole usage; a
	// mistake gets one line instead (main prints it), -h the help on stdout.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	if c.flags != nil {
		c.flags(fs)
	}
	err := fs.Parse(args)
	// Parsing stops at the first argument that is no flag, so "-h" after
	// an action ("bazaar dlq list -h") is still to be found.
	if errors.Is(err, flag.ErrHelp) || (err == nil && helpRequested(fs.Args())) {
		if c.help == nil || !c.help(stdout, fs.Args()) {
			printCommandHelp(stdout, c, fs)
		}
		return nil
	}
	if err != nil {
		return usageError{fmt.Sprintf("%s: %v (run \"bazaar %s -h\")", c.name, err, c.name)}
	}
	return c.run(ctx, &environment{getenv: getenv, stdout: stdout, stderr: stderr, flags: fs}, fs.Args())
}

// helpRequested reports whether args ask for help before a "--".
func helpRequested(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "-h", "-help", "--help":
			return true
		}
	}
	return false
}

func printCommandHelp(w io.Writer, c *command, fs *flag.FlagSet) {
	hasFlags := false
	fs.VisitAll(func(*flag.Flag) { hasFlags = true })
	synopsis := c.synopsis
	if synopsis == "" && hasFlags {
		synopsis = "[flags]"
	}
	fmt.Fprintf(w, "%s\n\n%s\n", strings.TrimSpace("usage: bazaar "+c.name+" "+synopsis), c.short)
	if c.detail != "" {
		fmt.Fprintf(w, "\n%s\n", c.detail)
	}
	printFlags(w, fs)
	fmt.Fprintln(w, "\nConfiguration comes from the environment; see README.md.")
}

// printFlags lists the flags of fs, if it has any, under a "flags:" line.
func printFlags(w io.Writer, fs *flag.FlagSet) {
	hasFlags := false
	fs.VisitAll(func(*flag.Flag) { hasFlags = true })
	if !hasFlags {
		return
	}
	fmt.Fprintln(w, "\nflags:")
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
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
