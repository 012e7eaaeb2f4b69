package console

import (
	"errors"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"
	"github.com/google/uuid"

	"github.com/bazaarhq/bazaar/sql/store"
)

// maxPauseChoices bounds the running sellers offered in the pause form.
const maxPauseChoices = 500

// pausedSellerRow is a paused seller as the Sellers page shows it.
type pausedSellerRow struct {
	store.Seller
	// Applied tells whether the consumer groups hold the seller yet: they
	// copy a pause from PostgreSQL within a second or so.
	Applied bool
	// Held lists the events each group has parked, by group name.
	Held  []heldCount
	Total int64
}

type heldCount struct {
	Group string
	N     int64
}

// sellersView is what the Sellers page shows.
type sellersView struct {
	Paused    []pausedSellerRow
	Running   []store.Seller
	CanChange bool
	// HoldsKnown is false without stream access: held counts unknown.
	HoldsKnown bool
	// Error says what could not be read from Redis, when something could
	// not.
	Error string
}

func (c *Console) sellersConfigured() bool {
	return c.cfg.PauseSeller != nil && c.cfg.ResumeSeller != nil
}

// sellers is the Sellers page: the paused sellers with the events each
// consumer group holds back for them, a resume form for each, and a form
// to pause a running seller with a reason.
func (c *Console) sellers(g *gin.Context) {
	ctx := g.Request.Context()
	paused, err := store.PausedSellers(ctx, c.cfg.DB)
	if err == nil {
		var running []store.Seller
		running, err = store.RunningSellers(ctx, c.cfg.DB, maxPauseChoices)
		if err == nil {
			v := sellersView{Running: running, CanChange: c.sellersConfigured(), HoldsKnown: c.cfg.Streams != nil}
			for _, s := range paused {
				row := pausedSellerRow{Seller: s}
				if c.cfg.Streams != nil {
					h, err := c.cfg.Streams.SellerHold(ctx, s.ID.String())
					if err != nil {
						c.log.Error("console: seller hold", "seller", s.Name, "err", err)
						v.Error = "Redis could not be read: the held events are not shown."
					}
					row.Applied = h.State == "paused"
					for _, grp := range sortedKeys(h.Held) {
						row.Held = append(row.Held, heldCount{grp, h.Held[grp]})
						row.Total += h.Held[grp]
					}
				}
				v.Paused = append(v.Paused, row)
			}
			c.render(g, http.StatusOK, "sellers", "Sellers", v)
			return
		}
	}
	c.log.Error("console: sellers", "err", err)
	c.fail(g, http.StatusInternalServerError, "The sellers could not be read; try again.")
}

func (c *Console) sellerID(g *gin.Context) (uuid.UUID, bool) {
	if !c.sellersConfigured() {
		c.fail(g, http.StatusServiceUnavailable, "Pausing sellers is not configured on this server.")
		return uuid.Nil, false
	}
	id, err := uuid.Parse(g.PostForm("seller"))
	if err != nil {
		c.fail(g, http.StatusNotFound, "No such seller.")
		return uuid.Nil, false
	}
	return id, true
}

// sellerFail answers an error of the pause hooks.
func (c *Console) sellerFail(g *gin.Context, what string, err error) {
	switch {
	case errors.Is(err, ErrInvalid):
		c.fail(g, http.StatusBadRequest, strings.TrimPrefix(err.Error(), ErrInvalid.Error()+": "))
	case errors.Is(err, store.ErrNotFound):
		c.fail(g, http.StatusNotFound, "No such seller.")
	default:
		c.log.Error("console: "+what, "err", err)
		c.fail(g, http.StatusInternalServerError, "The seller could not be changed; try again.")
	}
}

// pauseSeller pauses the seller of the form's "seller" field with its
// reason.
func (c *Console) pauseSeller(g *gin.Context) {
	id, ok := c.sellerID(g)
	if !ok {
		return
	}
	s, err := c.cfg.PauseSeller(g.Request.Context(), id, strings.TrimSpace(g.PostForm("reason")))
	if err != nil {
		c.sellerFail(g, "pause seller", err)
		return
	}
	c.log.Info("console: seller paused", "seller", s.Name, "actor", operatorOf(g).Name)
	c.done(g, Root+"/sellers", "Paused "+s.Name+": its events wait until it is resumed.")
}

func (c *Console) resumeSeller(g *gin.Context) {
	id, ok := c.sellerID(g)
	if !ok {
		return
	}
	s, err := c.cfg.ResumeSeller(g.Request.Context(), id, strings.TrimSpace(g.PostForm("reason")))
	if err != nil {
		c.sellerFail(g, "resume seller", err)
		return
	}
	c.log.Info("console: seller resumed", "seller", s.Name, "actor", operatorOf(g).Name)
	c.done(g, Root+"/sellers", "Resumed "+s.Name+": its held events are handled in order.")
}
