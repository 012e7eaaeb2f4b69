package printers

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bazaarhq/bazaar/sql/store"
)

var (
	printersDesc = prometheus.NewDesc("bazaar_printers",
		"Unrevoked polling receipt printers by protocol and state (offline: not seen for 2 x the poll interval + 5 s).",
		[]string{"protocol", "state"}, nil)
	unconfirmedDesc = prometheus.NewDesc("bazaar_print_jobs_unconfirmed",
		"Print jobs fetched and not confirmed in time, or reported failed, waiting for a person to resend them.",
		nil, nil)
)

// Collector reports the polling printers and the unconfirmed jobs, read
// from PostgreSQL when scraped, so every API process reports the same
// figures and they are right after a restart.
type Collector struct {
	h *Handler
}

// Collector returns the handler's metrics collector.
func (h *Handler) Collector() *Collector { return &Collector{h: h} }

// Describe sends the metrics' descriptions.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- printersDesc
	ch <- unconfirmedDesc
}

// Collect queries the counts, with a timeout so a slow database cannot
// hold the scrape; a failed query reports nothing for that metric.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	now := c.h.cfg.Now()
	counts, err := store.CountPrinters(ctx, c.h.cfg.DB, now)
	if err != nil {
		c.h.log.Warn("printer metrics", "err", err)
	}
	if err == nil {
		// Every protocol and state is reported, zero included, so the
		// series exist before the first printer is registered.
		by := map[store.PrinterProtocol]store.PrinterCount{}
		for _, p := range counts {
			by[p.Protocol] = p
		}
		for _, proto := range []store.PrinterProtocol{store.ProtocolCloudPRNT, store.ProtocolEpsonSDP} {
			p := by[proto]
			ch <- prometheus.MustNewConstMetric(printersDesc, prometheus.GaugeValue, float64(p.Online), string(proto), "online")
			ch <- prometheus.MustNewConstMetric(printersDesc, prometheus.GaugeValue, float64(p.Total-p.Online), string(proto), "offline")
		}
	}
	n, err := store.CountUnconfirmedPrintJobs(ctx, c.h.cfg.DB, now, c.h.cfg.ConfirmWithin)
	if err != nil {
		c.h.log.Warn("printer metrics", "err", err)
		return
	}
	ch <- prometheus.MustNewConstMetric(unconfirmedDesc, prometheus.GaugeValue, float64(n))
}
