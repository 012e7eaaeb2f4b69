package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/google/uuid"
)

// config is every setting of the printer, from flags with environment
// variables as defaults.
type config struct {
	URL         string
	Token       string
	SellerID    string
	PrinterID   string
	Topics      string
	Out         string
	ESCPOS      string
	StateDir    string
	IdleTimeout time.Duration
	MaxBackoff  time.Duration
	LogLevel    string
}

// usageError is a mistake in the command line or environment.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (config, error) {
	env := func(key, def string) string {
		if v := strings.TrimSpace(getenv(key)); v != "" {
			return v
		}
		return def
	}
	dur := func(key string, def time.Duration) time.Duration {
		if d, err := time.ParseDuration(env(key, "")); err == nil && d > 0 {
			return d
		}
		return def
	}
	var c config
	fs := flag.NewFlagSet("printer", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.URL, "url", env("BAZAAR_URL", "http://127.0.0.1:8080"), "Bazaar API base URL (BAZAAR_URL)")
	fs.StringVar(&c.Token, "token", env("BAZAAR_PRINTER_TOKEN", ""), "printer token, bzr_pr_... (BAZAAR_PRINTER_TOKEN)")
	fs.StringVar(&c.SellerID, "seller", env("BAZAAR_SELLER_ID", ""), "seller id (BAZAAR_SELLER_ID)")
	fs.StringVar(&c.PrinterID, "printer-id", env("BAZAAR_PRINTER_ID", ""), "the printer token's id, shown when it was created (BAZAAR_PRINTER_ID)")
	fs.StringVar(&c.Topics, "topics", env("BAZAAR_PRINTER_TOPICS", "order.created"), "event types that print a receipt (BAZAAR_PRINTER_TOPICS)")
	fs.StringVar(&c.Out, "out", env("BAZAAR_PRINTER_OUT", "-"), "receipt output: - for stdout, or a file appended to (BAZAAR_PRINTER_OUT)")
	fs.StringVar(&c.ESCPOS, "escpos", env("BAZAAR_PRINTER_ESCPOS", ""), "print ESC/POS over raw TCP to host:port, such as 192.0.2.7:9100, instead of -out (BAZAAR_PRINTER_ESCPOS)")
	fs.StringVar(&c.StateDir, "state-dir", env("BAZAAR_PRINTER_STATE_DIR", "printer-state"), "directory keeping the last event id and the printed orders (BAZAAR_PRINTER_STATE_DIR)")
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", dur("BAZAAR_PRINTER_IDLE_TIMEOUT", 45*time.Second), "reconnect when the stream is silent this long; the server sends heartbeats every 15s (BAZAAR_PRINTER_IDLE_TIMEOUT)")
	fs.DurationVar(&c.MaxBackoff, "max-backoff", dur("BAZAAR_PRINTER_MAX_BACKOFF", 30*time.Second), "longest wait between reconnects (BAZAAR_PRINTER_MAX_BACKOFF)")
	fs.StringVar(&c.LogLevel, "log-level", env("BAZAAR_LOG_LEVEL", "info"), "debug, info, warn or error (BAZAAR_LOG_LEVEL)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return config{}, err
		}
		return config{}, usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return config{}, usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	u, err := url.Parse(c.URL)
	switch {
	case err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https"):
		return config{}, usageError{fmt.Sprintf("-url %q is not an http(s) URL such as http://127.0.0.1:8080", c.URL)}
	case c.Token == "":
		return config{}, usageError{"-token (BAZAAR_PRINTER_TOKEN) is required"}
	case !isUUID(c.SellerID):
		return config{}, usageError{"-seller (BAZAAR_SELLER_ID) must be the seller's id"}
	case !isUUID(c.PrinterID):
		return config{}, usageError{"-printer-id (BAZAAR_PRINTER_ID) must be the printer token's id"}
	case c.StateDir == "":
		return config{}, usageError{"-state-dir must not be empty"}
	case c.IdleTimeout < time.Second:
		return config{}, usageError{"-idle-timeout must be at least 1s"}
	}
	if c.ESCPOS != "" {
		if _, _, err := net.SplitHostPort(c.ESCPOS); err != nil {
			return config{}, usageError{fmt.Sprintf("-escpos %q is not host:port", c.ESCPOS)}
		}
	}
	c.URL = strings.TrimRight(c.URL, "/")
	return c, nil
}

func isUUID(s string) bool {
	_, err := uuid.Parse(s)
	return err == nil && len(s) == 36
}
