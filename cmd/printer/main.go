// Command printer is Bazaar's reference receipt-printer agent, the program
// that runs in a seller's warehouse. It follows the seller's live event
// stream with a printer token, prints every new order (order.created) as a
// receipt, acknowledges each to the API, and keeps its place on disk, so a
// printer that was offline overnight prints every order it missed exactly
// once, in order, and never another seller's.
//
// Receipts go to stdout, to a file (appended), or as ESC/POS over raw TCP
// to a network printer (host:9100). Run "printer -h" for the settings; each
// flag also reads an environment variable.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "printer:", err)
		code := 1
		if errors.As(err, new(usageError)) {
			code = 2
		}
		os.Exit(code)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg, err := parseConfig(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	p, err := newPrinter(cfg, stdout, stderr)
	if err != nil {
		return err
	}
	defer p.close()
	return p.run(ctx)
}
