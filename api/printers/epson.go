package printers

import (
	"bytes"
	"cmp"
	"encoding/xml"
	"errors"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/bazaarhq/bazaar/api/printers/receipt"
	"github.com/bazaarhq/bazaar/sql/store"
)

// Server Direct Print limits: the printer refuses an answer over 2 MB.
const sdpMaxBytes = 2 << 20

// sdpTimeoutMillis is the <timeout> of each print request: how long the
// printer waits for its print unit (the manual's examples use 10,000 ms).
const sdpTimeoutMillis = "10000"

// EpsonSDP serves POST /v1/printers/epson, every Server Direct Print
// request of an Epson printer, told apart by the ConnectionType form field:
//
//   - GetRequest: the waiting receipts, one <ePOSPrint> each in a
//     <PrintRequestInfo Version="2.00">, or an empty 200 when there is
//     nothing to print. The receipts handed out are fetched: they wait for
//     SetResponse and turn unconfirmed after ConfirmWithin.
//   - SetResponse: ResponseFile is the printer's <PrintResponseInfo>;
//     success="true" acknowledges a printjobid's order, anything else
//     records its code and leaves the job unconfirmed.
//   - SetStatus: records the printer's status.
//
// The form field ID must be the printer id of the credentials.
func (h *Handler) EpsonSDP(c *gin.Context) {
	p, ok := h.authenticate(c, store.ProtocolEpsonSDP)
	if !ok {
		return
	}
	if err := c.Request.ParseForm(); err != nil {
		h.cfg.Fail(c, &ParamError{Name: "body", Message: "must be application/x-www-form-urlencoded"})
		return
	}
	form := c.Request.PostForm
	if form.Get("ID") != p.KeyID.String() {
		h.cfg.Fail(c, &ParamError{Name: "ID", Message: "must be the printer id, the user name of the credentials"})
		return
	}
	switch form.Get("ConnectionType") {
	case "GetRequest":
		h.sdpGetRequest(c, p)
	case "SetResponse":
		h.sdpSetResponse(c, p, form.Get("ResponseFile"))
	case "SetStatus":
		// The status fields are recorded as sent, less the ones above.
		form.Del("ID")
		form.Del("ConnectionType")
		if _, err := store.TouchPrinter(c.Request.Context(), h.cfg.DB, p.KeyID, h.cfg.Now(), true, clean(form.Encode(), 500), ""); err != nil {
			h.cfg.Fail(c, err)
			return
		}
		empty(c)
	default:
		h.cfg.Fail(c, &ParamError{Name: "ConnectionType", Message: "must be GetRequest, SetResponse or SetStatus"})
	}
}

func (h *Handler) sdpGetRequest(c *gin.Context, p store.Printer) {
	ctx := c.Request.Context()
	// Only the jobs that fit are handed out and marked fetched: render
	// first, inside the poll's transaction, then mark.
	var out bytes.Buffer
	jobs, err := h.poll(ctx, c, p, "", "", h.cfg.MaxJobs, false)
	if err != nil {
		h.cfg.Fail(c, err)
		return
	}
	if len(jobs) == 0 {
		empty(c)
		return
	}
	const head = `<?xml version="1.0" encoding="utf-8"?>` + "\n" + `<PrintRequestInfo Version="2.00">`
	const tail = `</PrintRequestInfo>`
	out.WriteString(head)
	var fetched []int64
	for _, j := range jobs {
		r, err := receiptOf(ctx, h.cfg.DB, j)
		if err != nil {
			h.cfg.Fail(c, err)
			return
		}
		one := `<ePOSPrint><Parameter><devid>local_printer</devid><timeout>` + sdpTimeoutMillis +
			`</timeout><printjobid>` + j.Token() + `</printjobid></Parameter><PrintData>` +
			receipt.EPOSPrint(r) + `</PrintData></ePOSPrint>`
		if out.Len()+len(one)+len(tail) > sdpMaxBytes {
			break
		}
		out.WriteString(one)
		fetched = append(fetched, j.ID)
	}
	out.WriteString(tail)
	if err := store.MarkPrintJobsFetched(ctx, h.cfg.DB, p.KeyID, h.cfg.Now(), fetched...); err != nil {
		h.cfg.Fail(c, err)
		return
	}
	c.Data(http.StatusOK, "text/xml; charset=utf-8", out.Bytes())
}

// sdpResponse is the part of a <PrintResponseInfo> Bazaar reads.
type sdpResponse struct {
	XMLName           xml.Name `xml:"PrintResponseInfo"`
	ServerDirectPrint *struct {
		Response struct {
			Success      string `xml:"Success,attr"`
			ErrorSummary string `xml:"ErrorSummary"`
		} `xml:"Response"`
	} `xml:"ServerDirectPrint"`
	Prints []struct {
		PrintJobID string `xml:"Parameter>printjobid"`
		Response   struct {
			Success string `xml:"success,attr"`
			Code    string `xml:"code,attr"`
		} `xml:"PrintResponse>response"`
	} `xml:"ePOSPrint"`
}

func (h *Handler) sdpSetResponse(c *gin.Context, p store.Printer, file string) {
	var res sdpResponse
	if err := xml.Unmarshal([]byte(file), &res); err != nil {
		h.cfg.Fail(c, &ParamError{Name: "ResponseFile", Message: "must be a <PrintResponseInfo> XML document"})
		return
	}
	ctx := c.Request.Context()
	now := h.cfg.Now()
	// Version 3.00: the printer could not take the whole answer (too big,
	// bad XML). Every receipt it was handed is then unconfirmed.
	if sd := res.ServerDirectPrint; sd != nil && !strings.EqualFold(sd.Response.Success, "true") {
		code := clean(cmp.Or(sd.Response.ErrorSummary, "request refused"), 100)
		if err := store.FailFetchedPrintJobs(ctx, h.cfg.DB, p.KeyID, now.Add(-h.cfg.ConfirmWithin), now, code); err != nil {
			h.cfg.Fail(c, err)
			return
		}
		h.log.Warn("printer refused a print request", "printer_id", p.KeyID, "code", code)
	}
	for _, pr := range res.Prints {
		id, ok := store.ParseJobToken(pr.PrintJobID)
		if !ok {
			h.log.Warn("printer answered for a job Bazaar did not send", "printer_id", p.KeyID, "printjobid", clean(pr.PrintJobID, 40))
			continue
		}
		var err error
		if strings.EqualFold(pr.Response.Success, "true") {
			_, err = store.ConfirmPrintJob(ctx, h.cfg.DB, id, p.KeyID, now)
		} else {
			code := clean(cmp.Or(pr.Response.Code, "failed"), 100)
			err = store.FailPrintJob(ctx, h.cfg.DB, id, p.KeyID, now, code)
			h.log.Warn("printer reported a failed job", "printer_id", p.KeyID, "job_token", pr.PrintJobID, "code", code)
		}
		if errors.Is(err, store.ErrNotFound) {
			h.log.Warn("printer answered for another printer's job", "printer_id", p.KeyID, "printjobid", pr.PrintJobID)
			continue
		}
		if err != nil {
			h.cfg.Fail(c, err)
			return
		}
	}
	empty(c)
}
