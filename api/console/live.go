package console

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/stream"
)

const (
	liveHeartbeat = 15 * time.Second
	liveWrite     = 10 * time.Second
)

// sse writes Server-Sent Events with a write deadline per flush.
type sse struct {
	w   http.ResponseWriter
	rc  *http.ResponseController
	buf bytes.Buffer
}

func startSSE(g *gin.Context) *sse {
	h := g.Writer.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	g.Status(http.StatusOK)
	s := &sse{w: g.Writer, rc: http.NewResponseController(g.Writer)}
	s.buf.WriteString("retry: 2000\n\n")
	return s
}

// event queues one event; id and name must not hold CR or LF.
func (s *sse) event(id, name string, data []byte) error {
	if strings.ContainsAny(id+name, "\r\n") {
		return errors.New("sse: CR or LF in id or event")
	}
	if id != "" {
		fmt.Fprintf(&s.buf, "id: %s\n", id)
	}
	fmt.Fprintf(&s.buf, "event: %s\n", name)
	for line := range bytes.SplitSeq(data, []byte("\n")) {
		fmt.Fprintf(&s.buf, "data: %s\n", line)
	}
	s.buf.WriteString("\n")
	return nil
}

func (s *sse) flush() error {
	if err := s.rc.SetWriteDeadline(time.Now().Add(liveWrite)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	_, err := s.w.Write(s.buf.Bytes())
	s.buf.Reset()
	if err != nil {
		return err
	}
	if err := s.rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	return nil
}

// live: GET /console/live, a snapshot every Refresh as a "snapshot"
// event, until the client leaves.
func (c *Console) live(g *gin.Context) {
	ctx := g.Request.Context()
	w := startSSE(g)
	tick := time.NewTicker(c.cfg.Refresh)
	defer tick.Stop()
	for {
		body, err := json.Marshal(c.snaps.get(ctx))
		if err != nil {
			c.log.Error("console: encode snapshot", "err", err)
			return
		}
		if err := w.event("", "snapshot", body); err != nil {
			return
		}
		if err := w.flush(); err != nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// OrderRow is an order as the Orders live page shows it.
type OrderRow struct {
	ID        string `json:"id"`
	Short     string `json:"short"`
	Seller    string `json:"seller"`
	SellerID  string `json:"seller_id"`
	Buyer     string `json:"buyer"`
	Items     int64  `json:"items"`
	Amount    string `json:"amount"`
	Status    string `json:"status"`
	Reason    string `json:"reason"`
	CreatedAt string `json:"created_at"`
	// Steps are the order's saga so far: created, reserved, paid, then
	// confirmed or cancelled (with the reason).
	Steps []OrderStep `json:"steps"`
}

// OrderStep is one step of an order's saga: done, failed or todo.
type OrderStep struct {
	Name  string `json:"name"`
	State string `json:"state"`
}

// orderSteps derives the saga steps from the order's status and its
// stock reservation and payment records.
func orderSteps(o store.OrderLine) []OrderStep {
	step := func(name string, done, failed bool) OrderStep {
		switch {
		case done:
			return OrderStep{name, "done"}
		case failed:
			return OrderStep{name, "failed"}
		}
		return OrderStep{name, "todo"}
	}
	steps := []OrderStep{
		{"created", "done"},
		step("reserved", o.Reservation == "reserved" || o.Reservation == "released", o.Reservation == "failed"),
		step("paid", o.Payment == "succeeded" || o.Payment == "refunded", o.Payment == "failed"),
	}
	switch o.Status {
	case store.OrderCancelled:
		name := "cancelled"
		if o.CancelReason != "" {
			name += ": " + o.CancelReason
		}
		steps = append(steps, OrderStep{name, "failed"})
	case store.OrderPending:
		steps = append(steps, OrderStep{"confirmed", "todo"})
	default: // confirmed, shipped, delivered
		steps = append(steps, OrderStep{"confirmed", "done"})
	}
	return steps
}

func orderRow(o store.OrderLine) OrderRow {
	buyer := o.BuyerName
	if buyer == "" {
		buyer = o.BuyerEmail
	}
	return OrderRow{
		ID: o.ID.String(), Short: o.ID.String()[:8], Seller: o.SellerName, SellerID: o.SellerID.String(), Buyer: buyer,
		Items: o.Items, Amount: money(o.TotalMinor, o.Currency), Status: string(o.Status), Reason: o.CancelReason,
		CreatedAt: o.CreatedAt.UTC().Format("15:04:05"), Steps: orderSteps(o),
	}
}

// liveOrders: GET /console/live/orders, an "order" event with the order's
// row each time an order event arrives (optionally only of ?seller= and in
// ?status=), and an "announcement" event for each announcement. It resumes
// from Last-Event-ID.
func (c *Console) liveOrders(g *gin.Context) {
	if c.cfg.Hub == nil {
		c.fail(g, http.StatusServiceUnavailable, "Live events are not enabled on this server.")
		return
	}
	ctx := g.Request.Context()
	opts := stream.SubscribeOptions{Patterns: []string{"order.#", "system.maintenance"}, Cursor: g.GetHeader("Last-Event-ID")}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	sub, err := c.cfg.Hub.Subscribe(sctx, opts)
	cancel()
	if errors.Is(err, stream.ErrBadCursor) {
		opts.Cursor = ""
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		sub, err = c.cfg.Hub.Subscribe(sctx, opts)
		cancel()
	}
	if err != nil {
		c.fail(g, http.StatusServiceUnavailable, "Live events are unavailable right now; the page retries.")
		return
	}
	defer sub.Close()
	seller, status := g.Query("seller"), g.Query("status")
	w := startSSE(g)
	if err := w.event(sub.Cursor(), "ready", []byte("{}")); err != nil || w.flush() != nil {
		return
	}
	for {
		hctx, cancel := context.WithTimeout(ctx, liveHeartbeat)
		ev, err := sub.Next(hctx)
		cancel()
		switch {
		case err == nil:
		case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
			w.buf.WriteString(": heartbeat\n\n")
			if w.flush() != nil {
				return
			}
			continue
		default:
			return // the client left, was too slow, or the hub stopped
		}
		var env stream.Envelope
		if err := json.Unmarshal(ev.Data, &env); err != nil {
			continue
		}
		if env.Type == "system.maintenance" {
			if w.event(ev.ID, "announcement", env.Data) != nil || w.flush() != nil {
				return
			}
			continue
		}
		id, err := uuid.Parse(env.Subject)
		if err != nil || (seller != "" && ev.Seller != seller) {
			continue
		}
		rows, err := store.RecentOrderLines(ctx, c.cfg.DB, nil, "", &id, 1)
		if err != nil || len(rows) == 0 {
			continue
		}
		row := orderRow(rows[0])
		if status != "" && row.Status != status {
			// Still sent, so a row that left the filtered state leaves
			// the page too.
			row.Status = "left:" + row.Status
		}
		body, _ := json.Marshal(row)
		if w.event(ev.ID, "order", body) != nil || w.flush() != nil {
			return
		}
	}
}
