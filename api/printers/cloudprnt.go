package printers

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/bazaarhq/bazaar/api/printers/receipt"
	"github.com/bazaarhq/bazaar/sql/store"
)

// The media types a CloudPRNT job is offered in, the printer picking the
// first it supports.
var cloudPRNTMediaTypes = []string{"image/png", "text/plain"}

// cloudPRNTPoll is the JSON body of a CloudPRNT poll; Bazaar reads these
// fields and ignores the others (clientAction results, barcode reader...).
type cloudPRNTPoll struct {
	StatusCode         string `json:"statusCode"`
	PrinterMAC         string `json:"printerMAC"`
	UniqueID           string `json:"uniqueID"`
	Status             string `json:"status"`
	PrintingInProgress bool   `json:"printingInProgress"`
}

// cloudPRNTPollAnswer is the JSON answer to a poll.
type cloudPRNTPollAnswer struct {
	JobReady     bool     `json:"jobReady"`
	MediaTypes   []string `json:"mediaTypes,omitempty"`
	JobToken     string   `json:"jobToken,omitempty"`
	DeleteMethod string   `json:"deleteMethod,omitempty"`
}

// CloudPRNTPoll serves POST /v1/printers/cloudprnt: the printer reports its
// status and learns whether a job is ready, with its token and the media
// types it may be fetched in. While a fetched job waits for its
// confirmation no other job is ready.
func (h *Handler) CloudPRNTPoll(c *gin.Context) {
	p, ok := h.authenticate(c, store.ProtocolCloudPRNT)
	if !ok {
		return
	}
	var body cloudPRNTPoll
	raw, err := io.ReadAll(c.Request.Body)
	if err != nil {
		h.cfg.Fail(c, err)
		return
	}
	if err := json.Unmarshal(raw, &body); err != nil {
		h.cfg.Fail(c, &ParamError{Name: "body", Message: "must be the CloudPRNT poll JSON object"})
		return
	}
	// Printers send statusCode URL-encoded ("200%20OK").
	status := body.StatusCode
	if s, err := url.QueryUnescape(status); err == nil {
		status = s
	}
	if body.PrintingInProgress {
		status += " (printing)"
	}
	jobs, err := h.poll(c.Request.Context(), c, p, clean(status, 200), clean(body.PrinterMAC, 40), 1, false)
	if err != nil {
		h.cfg.Fail(c, err)
		return
	}
	answer := cloudPRNTPollAnswer{JobReady: len(jobs) > 0}
	if answer.JobReady {
		answer.MediaTypes = cloudPRNTMediaTypes
		answer.JobToken = jobs[0].Token()
		answer.DeleteMethod = http.MethodDelete
	}
	c.JSON(http.StatusOK, answer)
}

// CloudPRNTJob serves GET /v1/printers/cloudprnt?type=&token=&mac=: the
// receipt of the job in the media type asked for. Fetching starts the
// job's confirmation window once; fetching again returns the same receipt
// and changes nothing. A job already printed or unconfirmed is not handed
// out again (404). A GET carrying code= is a confirmation, the form
// printers configured with deleteMethod GET use.
func (h *Handler) CloudPRNTJob(c *gin.Context) {
	if c.Request.URL.Query().Has("code") {
		h.CloudPRNTConfirm(c)
		return
	}
	p, ok := h.authenticate(c, store.ProtocolCloudPRNT)
	if !ok {
		return
	}
	q := c.Request.URL.Query()
	id, ok := store.ParseJobToken(q.Get("token"))
	if !ok {
		h.cfg.Fail(c, &ParamError{Name: "token", Message: "must be the jobToken of the last poll"})
		return
	}
	media := q.Get("type")
	if !slices.Contains(cloudPRNTMediaTypes, media) {
		h.cfg.Fail(c, &ParamError{Name: "type", Message: "media type " + quote(media) + " is not offered; use one of " + strings.Join(cloudPRNTMediaTypes, ", ")})
		return
	}
	ctx := c.Request.Context()
	now := h.cfg.Now()
	j, err := store.GetPrintJob(ctx, h.cfg.DB, id, p.KeyID)
	if err != nil {
		h.cfg.Fail(c, err)
		return
	}
	if st := j.State(now, h.cfg.ConfirmWithin); st != store.JobOffered && st != store.JobPrinting {
		h.cfg.Fail(c, store.ErrNotFound)
		return
	}
	r, err := receiptOf(ctx, h.cfg.DB, j)
	if err != nil {
		h.cfg.Fail(c, err)
		return
	}
	var body []byte
	switch media {
	case "text/plain":
		body = []byte(receipt.Text(r))
	case "image/png":
		body, err = receipt.PNG(r, p.DotWidth)
		if err != nil {
			h.cfg.Fail(c, err)
			return
		}
	}
	if err := store.MarkPrintJobsFetched(ctx, h.cfg.DB, p.KeyID, now, j.ID); err != nil {
		h.cfg.Fail(c, err)
		return
	}
	c.Data(http.StatusOK, media, body)
}

// CloudPRNTConfirm serves DELETE /v1/printers/cloudprnt?code=&token=&mac=:
// a code starting with 2 or OK acknowledges the job's order as printed;
// any other code is recorded on the job, which turns unconfirmed.
func (h *Handler) CloudPRNTConfirm(c *gin.Context) {
	p, ok := h.authenticate(c, store.ProtocolCloudPRNT)
	if !ok {
		return
	}
	q := c.Request.URL.Query()
	code := strings.TrimSpace(q.Get("code"))
	if code == "" {
		h.cfg.Fail(c, &ParamError{Name: "code", Message: "must be the printer's result code"})
		return
	}
	id, ok := store.ParseJobToken(q.Get("token"))
	if !ok {
		h.cfg.Fail(c, &ParamError{Name: "token", Message: "must be the jobToken of the job confirmed"})
		return
	}
	ctx := c.Request.Context()
	now := h.cfg.Now()
	if printedCode(code) {
		_, err := store.ConfirmPrintJob(ctx, h.cfg.DB, id, p.KeyID, now)
		if err != nil {
			h.cfg.Fail(c, err)
			return
		}
		empty(c)
		return
	}
	if err := store.FailPrintJob(ctx, h.cfg.DB, id, p.KeyID, now, clean(code, 100)); err != nil {
		h.cfg.Fail(c, err)
		return
	}
	h.log.Warn("printer reported a failed job", "printer_id", p.KeyID, "job_token", q.Get("token"), "code", clean(code, 100))
	empty(c)
}

// printedCode reports whether a CloudPRNT result code means printed:
// "OK", or a status code of the 2xx class ("200 OK").
func printedCode(code string) bool {
	return strings.HasPrefix(code, "2") || strings.HasPrefix(strings.ToUpper(code), "OK")
}

func quote(s string) string {
	b, err := json.Marshal(s)
	if err != nil {
		return `""`
	}
	return string(b)
}
