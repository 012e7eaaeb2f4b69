package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/bazaarhq/bazaar/api/client"
	"github.com/bazaarhq/bazaar/internal/backoff"
)

// printer follows the seller's event stream and prints orders.
type printer struct {
	cfg  config
	log  *slog.Logger
	http *http.Client
	// api calls the REST routes through the client generated from
	// api/openapi.yaml; the event stream, which it does not model, goes
	// through http.
	api   *client.ClientWithResponses
	state *state
	out   output
	// retry is the server's reconnection hint.
	retry time.Duration
}

// errFatal marks answers a retry cannot fix (a revoked token, a wrong
// seller): the printer stops and says why.
var errFatal = errors.New("fatal")

func newPrinter(cfg config, stdout, stderr io.Writer) (*printer, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		return nil, usageError{fmt.Sprintf("-log-level %q is not one of debug, info, warn, error", cfg.LogLevel)}
	}
	st, err := openState(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	var out output
	if cfg.ESCPOS != "" {
		out = escposOutput{addr: cfg.ESCPOS}
	} else if out, err = newTextOutput(cfg.Out, stdout); err != nil {
		_ = st.close()
		return nil, err
	}
	hc := &http.Client{Transport: http.DefaultTransport}
	api, err := client.NewClientWithResponses(cfg.URL, client.WithHTTPClient(hc),
		client.WithRequestEditorFn(func(_ context.Context, req *http.Request) error {
			req.Header.Set("Authorization", "Bearer "+cfg.Token)
			return nil
		}))
	if err != nil {
		_ = out.close()
		_ = st.close()
		return nil, usageError{fmt.Sprintf("-url %q: %v", cfg.URL, err)}
	}
	return &printer{
		cfg:   cfg,
		log:   slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: lvl})),
		http:  hc,
		api:   api,
		state: st,
		out:   out,
	}, nil
}

func (p *printer) close() {
	_ = p.out.close()
	_ = p.state.close()
}

// run connects, handles events, and reconnects with exponential backoff and
// full jitter until ctx ends or the server refuses the printer for good.
func (p *printer) run(ctx context.Context) error {
	p.log.Info("printer starting", "url", p.cfg.URL, "seller_id", p.cfg.SellerID, "printer_id", p.cfg.PrinterID, "resuming", p.state.cursor != "")
	failures := 0
	for ctx.Err() == nil {
		handled, err := p.session(ctx)
		switch {
		case ctx.Err() != nil:
		case errors.Is(err, errFatal):
			return err
		case err != nil:
			if handled > 0 {
				failures = 0
			}
			wait := p.backoff(failures)
			failures++
			p.log.Warn("stream interrupted; reconnecting", "err", err, "in", wait.String())
			select {
			case <-time.After(wait):
			case <-ctx.Done():
			}
		}
	}
	p.log.Info("printer stopped")
	return nil
}

// backoff is the wait before the next reconnect: its ceiling doubles from
// 500ms to MaxBackoff, the wait is drawn from zero to it (full jitter), and
// it is never shorter than the server's retry: hint.
func (p *printer) backoff(failures int) time.Duration {
	d := backoff.Policy{Base: 500 * time.Millisecond, Max: p.cfg.MaxBackoff}.Delay(failures)
	return max(d, p.retry)
}

// session is one connection: it returns how many events it handled and
// why it ended.
func (p *printer) session(ctx context.Context) (int, error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	q := url.Values{"topics": {p.cfg.Topics}}
	req, err := http.NewRequestWithContext(sctx, http.MethodGet, p.cfg.URL+"/v1/sellers/"+p.cfg.SellerID+"/events?"+q.Encode(), nil)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", errFatal, err)
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Authorization", "Bearer "+p.cfg.Token)
	if p.state.cursor != "" {
		req.Header.Set("Last-Event-ID", p.state.cursor)
	}
	res, err := p.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
		err := fmt.Errorf("GET events: %s: %s", res.Status, bytes.TrimSpace(body))
		switch res.StatusCode {
		case http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound:
			return 0, fmt.Errorf("%w: %w", errFatal, err)
		}
		return 0, err
	}
	p.log.Info("connected")

	// A watchdog drops a silent connection: heartbeats arrive every 15s.
	alive := make(chan struct{}, 1)
	go func() {
		t := time.NewTimer(p.cfg.IdleTimeout)
		defer t.Stop()
		for {
			select {
			case <-alive:
				t.Reset(p.cfg.IdleTimeout)
			case <-t.C:
				p.log.Warn("stream silent; reconnecting", "idle_timeout", p.cfg.IdleTimeout.String())
				cancel()
				return
			case <-sctx.Done():
				return
			}
		}
	}()

	handled := 0
	var ev sseEvent
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		select {
		case alive <- struct{}{}:
		default:
		}
		line := sc.Text()
		if line == "" {
			if ev.data.Len() > 0 || ev.event != "" {
				if err := p.handle(ctx, ev); err != nil {
					return handled, err
				}
				handled++
			}
			ev = sseEvent{}
			continue
		}
		if strings.HasPrefix(line, ":") {
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			ev.id = value
		case "event":
			ev.event = value
		case "data":
			if ev.data.Len() > 0 {
				ev.data.WriteByte('\n')
			}
			ev.data.WriteString(value)
		case "retry":
			if ms, err := strconv.Atoi(value); err == nil && ms > 0 {
				p.retry = min(time.Duration(ms)*time.Millisecond, p.cfg.MaxBackoff)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return handled, err
	}
	return handled, io.ErrUnexpectedEOF
}

type sseEvent struct {
	id    string
	event string
	data  bytes.Buffer
}

// envelope is the part of the CloudEvents envelope the printer reads.
type envelope struct {
	ID      string          `json:"id"`
	Type    string          `json:"type"`
	Subject string          `json:"subject"`
	Seller  string          `json:"seller"`
	Data    json.RawMessage `json:"data"`
}

// handle processes one event and only then records its id, so a crash
// anywhere repeats the event rather than losing it.
func (p *printer) handle(ctx context.Context, ev sseEvent) error {
	switch ev.event {
	case "ready":
	case "reset":
		p.log.Warn("the server could not resume from our last event id; printing from the unprinted-orders list", "data", ev.data.String())
		if err := p.reconcile(ctx); err != nil {
			return err
		}
	default:
		var env envelope
		if err := json.Unmarshal(ev.data.Bytes(), &env); err != nil {
			p.log.Error("undecodable event skipped", "err", err, "event", ev.event)
			break
		}
		if !strings.HasPrefix(env.Type, "order.") {
			break
		}
		if env.Seller != p.cfg.SellerID {
			// The server never sends another seller's events; refuse to
			// print one all the same.
			p.log.Error("event of another seller ignored", "event_id", env.ID, "seller", env.Seller)
			break
		}
		var o order
		if err := json.Unmarshal(env.Data, &o); err != nil || o.id() == "" {
			p.log.Error("order event without an order skipped", "event_id", env.ID, "err", err)
			break
		}
		if err := p.printOrder(ctx, o); err != nil {
			return err
		}
	}
	return p.state.saveCursor(ev.id)
}

// printOrder prints an order unless it was printed before, records it,
// then acknowledges it to the API.
func (p *printer) printOrder(ctx context.Context, o order) error {
	id := o.id()
	if !p.state.wasPrinted(id) {
		if err := p.printWithRetry(ctx, receiptText(o)); err != nil {
			return err
		}
		if err := p.state.markPrinted(id); err != nil {
			return err
		}
		p.log.Info("printed", "order_id", id)
	}
	return p.ack(ctx, id)
}

func (p *printer) printWithRetry(ctx context.Context, receipt string) error {
	for attempt := 0; ; attempt++ {
		err := p.out.print(ctx, receipt)
		if err == nil {
			return nil
		}
		wait := p.backoff(attempt)
		p.log.Error("printing failed; retrying", "err", err, "in", wait.String())
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// ack tells the API the order is printed, retrying until it answers.
func (p *printer) ack(ctx context.Context, orderID string) error {
	oid, err := uuid.Parse(orderID)
	if err != nil {
		// No such order can exist: nothing to acknowledge.
		p.log.Error("acknowledgement skipped: the order id is not a UUID", "order_id", orderID)
		return nil
	}
	printerID, err := uuid.Parse(p.cfg.PrinterID)
	if err != nil {
		return fmt.Errorf("%w: printer id %q: %w", errFatal, p.cfg.PrinterID, err)
	}
	for attempt := 0; ; attempt++ {
		res, err := p.api.AckPrintedOrderWithResponse(ctx, printerID, nil, client.PrinterAckCreate{OrderId: oid})
		if err == nil {
			switch res.StatusCode() {
			case http.StatusOK, http.StatusCreated:
				return nil
			case http.StatusNotFound:
				// The order is gone or the printer id is not ours:
				// nothing to acknowledge; the receipt is printed.
				p.log.Error("acknowledgement refused", "order_id", orderID, "status", res.StatusCode(), "body", excerpt(res.Body))
				return nil
			case http.StatusUnauthorized, http.StatusForbidden:
				return fmt.Errorf("%w: acknowledge %s: %s", errFatal, orderID, res.Status())
			}
			err = fmt.Errorf("acknowledge %s: %s", orderID, res.Status())
		}
		wait := p.backoff(attempt)
		p.log.Warn("acknowledgement failed; retrying", "err", err, "in", wait.String())
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// excerpt is the start of a response body, for a log line.
func excerpt(body []byte) string {
	return string(bytes.TrimSpace(body[:min(len(body), 4096)]))
}

// reconcile prints every order the API lists as unprinted, oldest first:
// after a reset the stream can no longer tell what was missed.
func (p *printer) reconcile(ctx context.Context) error {
	sellerID, err := uuid.Parse(p.cfg.SellerID)
	if err != nil {
		return fmt.Errorf("%w: seller id %q: %w", errFatal, p.cfg.SellerID, err)
	}
	limit := client.Limit(200)
	params := client.ListUnprintedOrdersParams{Limit: &limit}
	for {
		res, err := p.api.ListUnprintedOrdersWithResponse(ctx, sellerID, &params)
		if err != nil {
			return fmt.Errorf("list unprinted orders: %w", err)
		}
		if res.StatusCode() != http.StatusOK || res.JSON200 == nil {
			return fmt.Errorf("list unprinted orders: %s", res.Status())
		}
		// The receipt reads the same JSON as the order events do, so the
		// items are decoded into the printer's own order type; the page's
		// shape (its cursor) is the document's.
		var page struct {
			Items []order `json:"items"`
		}
		if err := json.Unmarshal(res.Body, &page); err != nil {
			return fmt.Errorf("list unprinted orders: %w", err)
		}
		for _, o := range page.Items {
			if err := p.printOrder(ctx, o); err != nil {
				return err
			}
		}
		if res.JSON200.NextCursor == nil {
			return nil
		}
		cursor := client.Cursor(*res.JSON200.NextCursor)
		params.Cursor = &cursor
	}
}
