package api

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"image/png"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/sql/store"
)

// The Epson answers are XML, which the response validator reads as text.
func init() { openapi3filter.RegisterBodyDecoder("text/xml", openapi3filter.PlainBodyDecoder) }

// testClock is the printer routes' clock, moved by the tests: poll
// intervals and the 60 s confirmation window pass without waiting.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// setupPrinters is setup with the printer routes on a test clock.
func setupPrinters(t *testing.T) (*testBundle, *testClock) {
	t.Helper()
	b := setup(t)
	clock := &testClock{now: time.Now()}
	srv, err := New(Config{DB: b.db, AdminToken: testAdminToken, MaxBodyBytes: 64 << 10, Printers: PrintersConfig{Now: clock.Now}})
	require.NoError(t, err)
	b.srv = srv
	return b, clock
}

// printerToken registers a printer of a seller and returns its id and secret.
func (b *testBundle) printerToken(seller uuid.UUID, protocol string) (string, string) {
	b.t.Helper()
	r := b.do(http.MethodPost, "/v1/sellers/"+seller.String()+"/printer-tokens", b.admin,
		map[string]any{"name": protocol + " printer", "protocol": protocol}).status(http.StatusCreated)
	m := r.json()
	require.Equal(b.t, protocol, m["protocol"])
	return m["id"].(string), m["key"].(string)
}

// basicRequest sends a request with HTTP Basic credentials (none when user
// is empty) and validates the answer against openapi.yaml.
func (b *testBundle) basicRequest(method, target, user, pass, contentType string, body []byte) response {
	b.t.Helper()
	req := httptest.NewRequest(method, target, bytes.NewReader(body))
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	rec := httptest.NewRecorder()
	b.srv.Handler().ServeHTTP(rec, req)
	res := response{t: b.t, code: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
	if len(res.body) > 0 {
		validateResponse(b.t, method, target, res)
	}
	return res
}

// cloudPRNTDevice does what a Star CloudPRNT (HTTP method) printer does,
// as Star's protocol reference describes it: every poll interval it POSTs
// its status as JSON (statusCode URL-encoded, printerMAC,
// printingInProgress). When the answer says jobReady it GETs the job with
// type (the first of the offered mediaTypes it supports), token and mac,
// prints it, and confirms with DELETE carrying code "OK" (a 2xx status
// code on older firmware) and the same token and mac; an error code when
// it cannot print.
type cloudPRNTDevice struct {
	b        *testBundle
	clock    *testClock
	id, pass string
	mac      string
	supports []string
	printed  []uuid.UUID
}

type cloudPRNTAnswer struct {
	JobReady     bool     `json:"jobReady"`
	MediaTypes   []string `json:"mediaTypes"`
	JobToken     string   `json:"jobToken"`
	DeleteMethod string   `json:"deleteMethod"`
}

func (b *testBundle) cloudPRNT(clock *testClock, seller uuid.UUID, supports ...string) *cloudPRNTDevice {
	id, pass := b.printerToken(seller, "cloudprnt")
	return &cloudPRNTDevice{b: b, clock: clock, id: id, pass: pass, mac: "00:11:62:0c:1d:2e", supports: supports}
}

// pollRaw waits one poll interval and polls.
func (d *cloudPRNTDevice) pollRaw() response {
	d.b.t.Helper()
	d.clock.Advance(5 * time.Second)
	body := mustJSON(d.b.t, map[string]any{
		"status": "23 6 0 0 0 0 0 0 0 ", "printerMAC": d.mac, "statusCode": "200%20OK",
		"printingInProgress": false, "uniqueID": "till-1",
	})
	return d.b.basicRequest(http.MethodPost, "/v1/printers/cloudprnt", d.id, d.pass, "application/json", body)
}

func (d *cloudPRNTDevice) poll() cloudPRNTAnswer {
	d.b.t.Helper()
	res := d.pollRaw().status(http.StatusOK)
	var a cloudPRNTAnswer
	require.NoError(d.b.t, json.Unmarshal(res.body, &a))
	if a.JobReady {
		require.Regexp(d.b.t, `^[A-Za-z0-9_.-]{1,30}$`, a.JobToken)
		require.Equal(d.b.t, "DELETE", a.DeleteMethod)
	}
	return a
}

func (d *cloudPRNTDevice) jobURL(token string, extra url.Values) string {
	q := url.Values{"token": {token}, "mac": {d.mac}}
	for k, v := range extra {
		q[k] = v
	}
	return "/v1/printers/cloudprnt?" + q.Encode()
}

func (d *cloudPRNTDevice) fetchRaw(token, media string) response {
	d.b.t.Helper()
	return d.b.basicRequest(http.MethodGet, d.jobURL(token, url.Values{"type": {media}}), d.id, d.pass, "", nil)
}

// pick is the first offered media type the device supports.
func (d *cloudPRNTDevice) pick(offered []string) string {
	for _, m := range offered {
		for _, s := range d.supports {
			if m == s {
				return m
			}
		}
	}
	d.b.t.Fatalf("no media type of %v is supported", offered)
	return ""
}

func (d *cloudPRNTDevice) confirm(token, code string) response {
	d.b.t.Helper()
	return d.b.basicRequest(http.MethodDelete, d.jobURL(token, url.Values{"code": {code}}), d.id, d.pass, "", nil)
}

// printOne runs one poll; when a job is ready it fetches, prints and
// confirms it, and reports true.
func (d *cloudPRNTDevice) printOne() bool {
	d.b.t.Helper()
	a := d.poll()
	if !a.JobReady {
		return false
	}
	media := d.pick(a.MediaTypes)
	res := d.fetchRaw(a.JobToken, media).status(http.StatusOK)
	require.Equal(d.b.t, media, res.header.Get("Content-Type"))
	d.printed = append(d.printed, receiptOrder(d.b.t, res.body))
	d.confirm(a.JobToken, "OK").status(http.StatusOK)
	return true
}

var receiptOrderLine = regexp.MustCompile(`(?m)^Order: ([0-9a-f-]{36})$`)

// receiptOrder reads the order id off a text receipt.
func receiptOrder(t *testing.T, text []byte) uuid.UUID {
	t.Helper()
	m := receiptOrderLine.FindSubmatch(text)
	require.NotNil(t, m, "receipt: %s", text)
	return uuid.MustParse(string(m[1]))
}

func (b *testBundle) unprinted(seller uuid.UUID) []uuid.UUID {
	b.t.Helper()
	res := b.do(http.MethodGet, "/v1/sellers/"+seller.String()+"/unprinted-orders?limit=200", b.printerA, nil).status(http.StatusOK)
	out := []uuid.UUID{}
	for _, it := range res.json()["items"].([]any) {
		out = append(out, uuid.MustParse(it.(map[string]any)["id"].(string)))
	}
	return out
}

func (b *testBundle) printJobs(seller uuid.UUID) []map[string]any {
	b.t.Helper()
	res := b.do(http.MethodGet, "/v1/sellers/"+seller.String()+"/print-jobs", b.admin, nil).status(http.StatusOK)
	out := []map[string]any{}
	for _, it := range res.json()["items"].([]any) {
		out = append(out, it.(map[string]any))
	}
	return out
}

func (b *testBundle) printerListed(seller uuid.UUID, id string) map[string]any {
	b.t.Helper()
	res := b.do(http.MethodGet, "/v1/sellers/"+seller.String()+"/printers", b.admin, nil).status(http.StatusOK)
	for _, it := range res.json()["items"].([]any) {
		if p := it.(map[string]any); p["id"] == id {
			return p
		}
	}
	b.t.Fatalf("printer %s not listed", id)
	return nil
}

func (b *testBundle) orders(n int) []uuid.UUID {
	b.t.Helper()
	p, u := b.product(b.keyA, nil), b.user()
	out := make([]uuid.UUID, n)
	for i := range out {
		out[i] = b.order(p, u, store.OrderPending)
	}
	return out
}

// A CloudPRNT printer offline while 100 orders arrived prints each once,
// oldest first, when it comes back; printed orders leave the unprinted
// list the SSE printers read, and the printer is listed online with
// nothing left.
func TestCloudPRNTCatchesUpInOrderOnce(t *testing.T) {
	t.Parallel()
	b, clock := setupPrinters(t)
	dev := b.cloudPRNT(clock, b.sellerA, "text/plain")
	want := b.orders(100)
	require.Equal(t, "offline", func() string {
		if p := b.printerListed(b.sellerA, dev.id); p["online"] == false && p["last_seen_at"] == nil {
			return "offline"
		}
		return "seen"
	}())

	for dev.printOne() {
		require.LessOrEqual(t, len(dev.printed), 100, "printed more receipts than orders")
	}
	require.Equal(t, want, dev.printed)
	require.Empty(t, b.unprinted(b.sellerA))
	require.False(t, dev.poll().JobReady)

	p := b.printerListed(b.sellerA, dev.id)
	require.Equal(t, "cloudprnt", p["protocol"])
	require.Equal(t, true, p["online"])
	require.Equal(t, "200 OK", p["status"])
	require.NotNil(t, p["last_ack_at"])
	require.EqualValues(t, 0, p["unprinted"])
	require.EqualValues(t, 0, p["unconfirmed"])
	clock.Advance(16 * time.Second) // 2 x 5 s + 5 s, and a second more
	require.Equal(t, false, b.printerListed(b.sellerA, dev.id)["online"])
}

// A printer that dies between fetching a job and confirming it: the job
// turns unconfirmed after 60 s and is not handed out again, so it is not
// printed twice; the next orders go on printing. A person resends it; a
// late confirmation is recorded.
func TestCloudPRNTUnconfirmedJobIsNotPrintedTwice(t *testing.T) {
	t.Parallel()
	b, clock := setupPrinters(t)
	dev := b.cloudPRNT(clock, b.sellerA, "text/plain")
	orders := b.orders(3)

	a := dev.poll()
	require.True(t, a.JobReady)
	res := dev.fetchRaw(a.JobToken, "text/plain").status(http.StatusOK)
	require.Equal(t, orders[0], receiptOrder(t, res.body))
	// The printer dies here. Back within the window, nothing is ready: the
	// job may still be printing.
	require.False(t, dev.poll().JobReady)
	clock.Advance(60 * time.Second)

	require.True(t, dev.printOne())
	require.True(t, dev.printOne())
	require.False(t, dev.printOne())
	require.Equal(t, orders[1:], dev.printed, "the unconfirmed order is skipped, never sent again")
	dev.fetchRaw(a.JobToken, "text/plain").problem(http.StatusNotFound, "not-found")

	jobs := b.printJobs(b.sellerA)
	require.Len(t, jobs, 1)
	require.Equal(t, orders[0].String(), jobs[0]["order_id"])
	require.Equal(t, "unconfirmed", jobs[0]["state"])
	require.Equal(t, dev.id, jobs[0]["printer_id"])
	require.EqualValues(t, 1, b.printerListed(b.sellerA, dev.id)["unconfirmed"])
	require.Equal(t, []uuid.UUID{orders[0]}, b.unprinted(b.sellerA))

	// A person resends it; it prints at the next poll.
	resend := "/v1/sellers/" + b.sellerA.String() + "/print-jobs/" + orders[0].String() + "/resend"
	b.do(http.MethodPost, resend, b.keyA, nil).status(http.StatusNoContent)
	b.do(http.MethodPost, resend, b.keyA, nil).problem(http.StatusConflict, "invalid-transition")
	require.True(t, dev.printOne())
	require.Equal(t, []uuid.UUID{orders[1], orders[2], orders[0]}, dev.printed)
	b.do(http.MethodPost, resend, b.keyA, nil).problem(http.StatusConflict, "invalid-transition")
	b.do(http.MethodPost, "/v1/sellers/"+b.sellerB.String()+"/print-jobs/"+orders[0].String()+"/resend", b.keyB, nil).
		problem(http.StatusNotFound, "not-found")
	require.Empty(t, b.printJobs(b.sellerA))

	// A confirmation arriving after the window is recorded as printed.
	late := b.orders(1)[0]
	a = dev.poll()
	dev.fetchRaw(a.JobToken, "text/plain").status(http.StatusOK)
	clock.Advance(2 * time.Minute)
	require.Len(t, b.printJobs(b.sellerA), 1)
	dev.confirm(a.JobToken, "OK").status(http.StatusOK)
	require.Empty(t, b.printJobs(b.sellerA))
	require.NotContains(t, b.unprinted(b.sellerA), late)
}

// Fetching a job again returns the same receipt and changes nothing; the
// PNG is the printer's width; an error code is recorded on the job.
func TestCloudPRNTFetchAgainAndErrorCode(t *testing.T) {
	t.Parallel()
	b, clock := setupPrinters(t)
	dev := b.cloudPRNT(clock, b.sellerA, "image/png", "text/plain")
	order := b.orders(1)[0]
	a := dev.poll()
	require.True(t, a.JobReady)
	require.Equal(t, []string{"image/png", "text/plain"}, a.MediaTypes)

	fetchedAt := func() time.Time {
		var at time.Time
		require.NoError(t, b.db.Get(&at, `SELECT fetched_at FROM print_jobs WHERE order_id = $1`, order))
		return at
	}
	first := dev.fetchRaw(a.JobToken, "image/png").status(http.StatusOK)
	at := fetchedAt()
	clock.Advance(10 * time.Second)
	before := b.counts()
	again := dev.fetchRaw(a.JobToken, "image/png").status(http.StatusOK)
	require.Equal(t, first.body, again.body, "the same job")
	require.Equal(t, at, fetchedAt(), "no side effect")
	require.Equal(t, before, b.counts())
	require.Equal(t, []uuid.UUID{order}, b.unprinted(b.sellerA))
	img, err := png.Decode(bytes.NewReader(first.body))
	require.NoError(t, err)
	require.Equal(t, 576, img.Bounds().Dx())
	text := dev.fetchRaw(a.JobToken, "text/plain").status(http.StatusOK)
	require.Equal(t, order, receiptOrder(t, text.body))

	dev.confirm(a.JobToken, "520 Job Error").status(http.StatusOK)
	jobs := b.printJobs(b.sellerA)
	require.Len(t, jobs, 1)
	require.Equal(t, "unconfirmed", jobs[0]["state"])
	require.Equal(t, "520 Job Error", jobs[0]["error_code"])
	require.Equal(t, []uuid.UUID{order}, b.unprinted(b.sellerA))
	require.False(t, dev.poll().JobReady, "a failed job is not sent again on its own")
}

// Printers configured with deleteMethod GET confirm with a GET carrying code.
func TestCloudPRNTConfirmByGet(t *testing.T) {
	t.Parallel()
	b, clock := setupPrinters(t)
	dev := b.cloudPRNT(clock, b.sellerA, "text/plain")
	order := b.orders(1)[0]
	a := dev.poll()
	dev.fetchRaw(a.JobToken, "text/plain").status(http.StatusOK)
	b.basicRequest(http.MethodGet, dev.jobURL(a.JobToken, url.Values{"code": {"200 OK"}, "delete": {""}}), dev.id, dev.pass, "", nil).
		status(http.StatusOK)
	require.NotContains(t, b.unprinted(b.sellerA), order)
	require.False(t, dev.poll().JobReady)
}

func TestCloudPRNTRefusals(t *testing.T) {
	t.Parallel()
	b, clock := setupPrinters(t)
	dev := b.cloudPRNT(clock, b.sellerA, "text/plain")
	b.orders(1)
	poll := mustJSON(t, map[string]any{"statusCode": "200%20OK", "printerMAC": dev.mac})
	basic := func(res response) {
		t.Helper()
		res.problem(http.StatusUnauthorized, "unauthorized")
		require.True(t, strings.HasPrefix(res.header.Get("WWW-Authenticate"), "Basic "), res.header.Get("WWW-Authenticate"))
	}
	before := b.counts()
	basic(b.basicRequest(http.MethodPost, "/v1/printers/cloudprnt", "", "", "application/json", poll))
	basic(b.basicRequest(http.MethodPost, "/v1/printers/cloudprnt", dev.id, dev.pass+"x", "application/json", poll))
	basic(b.basicRequest(http.MethodPost, "/v1/printers/cloudprnt", uuid.NewString(), dev.pass, "application/json", poll))
	basic(b.basicRequest(http.MethodPost, "/v1/printers/cloudprnt", "not-an-id", dev.pass, "application/json", poll))
	basic(b.basicRequest(http.MethodGet, "/v1/printers/cloudprnt?token=bz1&type=text/plain", dev.id, "", "", nil))
	basic(b.basicRequest(http.MethodDelete, "/v1/printers/cloudprnt?token=bz1&code=OK", "", "", "", nil))
	bearer := b.serve(http.MethodPost, "/v1/printers/cloudprnt", dev.pass, poll)
	basic(bearer)
	// An SSE printer token and an Epson printer are no CloudPRNT printers.
	sseID, ssePass := b.printerToken(b.sellerA, "sse")
	b.basicRequest(http.MethodPost, "/v1/printers/cloudprnt", sseID, ssePass, "application/json", poll).problem(http.StatusForbidden, "forbidden")
	epsonID, epsonPass := b.printerToken(b.sellerA, "epson-sdp")
	b.basicRequest(http.MethodPost, "/v1/printers/cloudprnt", epsonID, epsonPass, "application/json", poll).problem(http.StatusForbidden, "forbidden")
	require.Nil(t, b.printerListed(b.sellerA, dev.id)["last_seen_at"], "refused polls record nothing")
	before["api_keys"] = before["api_keys"].(float64) + 2
	require.Equal(t, before, b.counts())

	a := dev.poll()
	require.True(t, a.JobReady)
	// Too soon after the last poll: 429, nothing recorded.
	tooSoon := b.basicRequest(http.MethodPost, "/v1/printers/cloudprnt", dev.id, dev.pass, "application/json", poll)
	tooSoon.problem(http.StatusTooManyRequests, "printer-poll-too-fast")
	require.Equal(t, "1", tooSoon.header.Get("Retry-After"))

	// A media type that is not offered.
	p := dev.fetchRaw(a.JobToken, "application/vnd.star.starprnt").problem(http.StatusBadRequest, "invalid-parameter")
	field := p["errors"].([]any)[0].(map[string]any)
	require.Equal(t, "type", field["field"])
	require.Contains(t, field["message"], "image/png, text/plain")
	dev.fetchRaw("nonsense", "text/plain").problem(http.StatusBadRequest, "invalid-parameter")
	dev.confirm(a.JobToken, "").problem(http.StatusBadRequest, "invalid-parameter")
	b.basicRequest(http.MethodPost, "/v1/printers/cloudprnt", dev.id, dev.pass, "application/json", []byte("{")).
		problem(http.StatusBadRequest, "invalid-parameter")
	var fetched *time.Time
	require.NoError(t, b.db.Get(&fetched, `SELECT fetched_at FROM print_jobs WHERE printer_key_id = $1`, dev.id))
	require.Nil(t, fetched, "a refused fetch is no fetch")

	// Another seller's printer never sees the job, nor fetches or confirms it.
	other := b.cloudPRNT(clock, b.sellerB, "text/plain")
	require.False(t, other.poll().JobReady)
	other.fetchRaw(a.JobToken, "text/plain").problem(http.StatusNotFound, "not-found")
	other.confirm(a.JobToken, "OK").problem(http.StatusNotFound, "not-found")
	require.Len(t, b.unprinted(b.sellerA), 1)
}

// sdpDevice does what an Epson TM printer with Server Direct Print does,
// as Epson's Server Direct Print manual describes it: it POSTs
// application/x-www-form-urlencoded forms with its ID and a
// ConnectionType. GetRequest is answered with a <PrintRequestInfo> of
// <ePOSPrint> elements (Parameter: devid, timeout, printjobid; PrintData:
// the ePOS-Print document), or nothing; it prints them and reports each
// result with SetResponse, a <PrintResponseInfo> whose <response> carries
// success and code per printjobid.
type sdpDevice struct {
	b        *testBundle
	clock    *testClock
	id, pass string
}

type sdpJob struct {
	Devid      string `xml:"Parameter>devid"`
	Timeout    string `xml:"Parameter>timeout"`
	PrintJobID string `xml:"Parameter>printjobid"`
	Print      struct {
		Texts []string `xml:"text"`
	} `xml:"PrintData>epos-print"`
}

func (d *sdpDevice) post(form url.Values) response {
	d.b.t.Helper()
	form.Set("ID", d.id)
	return d.b.basicRequest(http.MethodPost, "/v1/printers/epson", d.id, d.pass, "application/x-www-form-urlencoded", []byte(form.Encode()))
}

// getRequest waits one poll interval and asks for print requests.
func (d *sdpDevice) getRequest() []sdpJob {
	d.b.t.Helper()
	d.clock.Advance(5 * time.Second)
	res := d.post(url.Values{"ConnectionType": {"GetRequest"}}).status(http.StatusOK)
	if len(res.body) == 0 {
		require.Equal(d.b.t, "0", res.header.Get("Content-Length"))
		return nil
	}
	require.Equal(d.b.t, "text/xml; charset=utf-8", res.header.Get("Content-Type"))
	var doc struct {
		XMLName xml.Name `xml:"PrintRequestInfo"`
		Version string   `xml:"Version,attr"`
		Jobs    []sdpJob `xml:"ePOSPrint"`
	}
	require.NoError(d.b.t, xml.Unmarshal(res.body, &doc), "%s", res.body)
	require.LessOrEqual(d.b.t, len(res.body), 2<<20)
	for _, j := range doc.Jobs {
		require.Equal(d.b.t, "local_printer", j.Devid)
		require.NotEmpty(d.b.t, j.Timeout)
		require.Regexp(d.b.t, `^[A-Za-z0-9_.-]{1,30}$`, j.PrintJobID)
	}
	return doc.Jobs
}

func (j sdpJob) order(t *testing.T) uuid.UUID {
	return receiptOrder(t, []byte(strings.Join(j.Print.Texts, "")))
}

// setResponse reports results: printjobid -> code, "" meaning success.
func (d *sdpDevice) setResponse(results [][2]string) response {
	d.b.t.Helper()
	var x strings.Builder
	x.WriteString(`<?xml version="1.0" encoding="utf-8"?><PrintResponseInfo Version="2.00">`)
	for _, r := range results {
		success := "true"
		if r[1] != "" {
			success = "false"
		}
		x.WriteString(`<ePOSPrint><Parameter><devid>local_printer</devid><printjobid>` + r[0] + `</printjobid></Parameter>` +
			`<PrintResponse><response xmlns="http://www.epson-pos.com/schemas/2011/03/epos-print" success="` + success +
			`" code="` + r[1] + `" status="251658262" battery="0"/></PrintResponse></ePOSPrint>`)
	}
	x.WriteString(`</PrintResponseInfo>`)
	return d.post(url.Values{"ConnectionType": {"SetResponse"}, "ResponseFile": {x.String()}})
}

func TestEpsonServerDirectPrint(t *testing.T) {
	t.Parallel()
	b, clock := setupPrinters(t)
	id, pass := b.printerToken(b.sellerA, "epson-sdp")
	dev := &sdpDevice{b: b, clock: clock, id: id, pass: pass}
	require.Nil(t, dev.getRequest(), "nothing to print")
	orders := b.orders(3)

	jobs := dev.getRequest()
	require.Len(t, jobs, 3)
	for i, j := range jobs {
		require.Equal(t, orders[i], j.order(t), "oldest first")
	}
	require.Nil(t, dev.getRequest(), "handed out jobs wait for their results")

	dev.setResponse([][2]string{{jobs[0].PrintJobID, ""}, {jobs[1].PrintJobID, "EX_BADPORT"}, {jobs[2].PrintJobID, ""}}).status(http.StatusOK)
	require.Equal(t, []uuid.UUID{orders[1]}, b.unprinted(b.sellerA))
	failed := b.printJobs(b.sellerA)
	require.Len(t, failed, 1)
	require.Equal(t, "EX_BADPORT", failed[0]["error_code"])
	require.Equal(t, "unconfirmed", failed[0]["state"])
	require.Nil(t, dev.getRequest(), "a failed job is not sent again on its own")

	// Killed between fetch and result: unconfirmed after 60 s, never resent.
	killed := b.orders(1)[0]
	jobs = dev.getRequest()
	require.Len(t, jobs, 1)
	require.Equal(t, killed, jobs[0].order(t))
	clock.Advance(61 * time.Second)
	next := b.orders(1)[0]
	jobs = dev.getRequest()
	require.Len(t, jobs, 1)
	require.Equal(t, next, jobs[0].order(t))
	dev.setResponse([][2]string{{jobs[0].PrintJobID, ""}}).status(http.StatusOK)
	require.Len(t, b.printJobs(b.sellerA), 2)
	require.ElementsMatch(t, []uuid.UUID{orders[1], killed}, b.unprinted(b.sellerA))

	dev.post(url.Values{"ConnectionType": {"SetStatus"}, "Status": {"paper-near-end"}}).status(http.StatusOK)
	p := b.printerListed(b.sellerA, id)
	require.Contains(t, p["status"], "paper-near-end")
	require.Equal(t, "epson-sdp", p["protocol"])
	require.EqualValues(t, 2, p["unconfirmed"])

	// Refusals.
	form := []byte(url.Values{"ConnectionType": {"GetRequest"}, "ID": {id}}.Encode())
	res := b.basicRequest(http.MethodPost, "/v1/printers/epson", id, pass+"x", "application/x-www-form-urlencoded", form)
	res.problem(http.StatusUnauthorized, "unauthorized")
	require.True(t, strings.HasPrefix(res.header.Get("WWW-Authenticate"), "Basic "))
	other := []byte(url.Values{"ConnectionType": {"GetRequest"}, "ID": {uuid.NewString()}}.Encode())
	b.basicRequest(http.MethodPost, "/v1/printers/epson", id, pass, "application/x-www-form-urlencoded", other).
		problem(http.StatusBadRequest, "invalid-parameter")
	dev.post(url.Values{"ConnectionType": {"Reboot"}}).problem(http.StatusBadRequest, "invalid-parameter")
	dev.post(url.Values{"ConnectionType": {"SetResponse"}, "ResponseFile": {"<oops"}}).problem(http.StatusBadRequest, "invalid-parameter")
	sseID, ssePass := b.printerToken(b.sellerA, "sse")
	b.basicRequest(http.MethodPost, "/v1/printers/epson", sseID, ssePass, "application/x-www-form-urlencoded",
		[]byte(url.Values{"ConnectionType": {"GetRequest"}, "ID": {sseID}}.Encode())).problem(http.StatusForbidden, "forbidden")
}

// The printer metrics count polling printers online and offline (not seen
// for 2 x the poll interval + 5 s) and the unconfirmed jobs.
func TestPrinterMetrics(t *testing.T) {
	t.Parallel()
	b := setup(t)
	clock := &testClock{now: time.Now()}
	reg := prometheus.NewRegistry()
	srv, err := New(Config{DB: b.db, AdminToken: testAdminToken, Registry: reg, Printers: PrintersConfig{Now: clock.Now}})
	require.NoError(t, err)
	b.srv = srv
	gauge := func() map[string]float64 {
		t.Helper()
		mfs, err := reg.Gather()
		require.NoError(t, err)
		out := map[string]float64{}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				key := mf.GetName()
				for _, l := range m.GetLabel() {
					key += " " + l.GetName() + "=" + l.GetValue()
				}
				if m.GetGauge() != nil {
					out[key] = m.GetGauge().GetValue()
				}
			}
		}
		return out
	}
	dev := b.cloudPRNT(clock, b.sellerA, "text/plain")
	b.printerToken(b.sellerA, "epson-sdp")
	b.orders(2)
	g := gauge()
	require.Equal(t, 1.0, g["bazaar_printers protocol=cloudprnt state=offline"])
	require.Equal(t, 1.0, g["bazaar_printers protocol=epson-sdp state=offline"])
	require.Equal(t, 0.0, g["bazaar_print_jobs_unconfirmed"])

	a := dev.poll()
	dev.fetchRaw(a.JobToken, "text/plain").status(http.StatusOK)
	g = gauge()
	require.Equal(t, 1.0, g["bazaar_printers protocol=cloudprnt state=online"])
	require.Equal(t, 0.0, g["bazaar_printers protocol=cloudprnt state=offline"])

	clock.Advance(61 * time.Second)
	g = gauge()
	require.Equal(t, 0.0, g["bazaar_printers protocol=cloudprnt state=online"])
	require.Equal(t, 1.0, g["bazaar_printers protocol=cloudprnt state=offline"])
	require.Equal(t, 1.0, g["bazaar_print_jobs_unconfirmed"])
}

// Two polling printers of one seller and an SSE printer share the orders:
// each order is printed once, by whichever printer took it first.
func TestPrintersOfOneSellerShareOrders(t *testing.T) {
	t.Parallel()
	b, clock := setupPrinters(t)
	one := b.cloudPRNT(clock, b.sellerA, "text/plain")
	two := b.cloudPRNT(clock, b.sellerA, "text/plain")
	orders := b.orders(10)
	// The SSE printer (printer A) prints the first order and acknowledges it.
	var sseKeyID string
	for _, it := range b.do(http.MethodGet, "/v1/sellers/"+b.sellerA.String()+"/keys", b.admin, nil).status(http.StatusOK).json()["items"].([]any) {
		k := it.(map[string]any)
		if k["role"] == "printer" && k["prefix"] == b.printerA[:len(k["prefix"].(string))] {
			sseKeyID = k["id"].(string)
		}
	}
	require.NotEmpty(t, sseKeyID)
	b.do(http.MethodPost, "/v1/printers/"+sseKeyID+"/acks", b.printerA, map[string]any{"order_id": orders[0]}).status(http.StatusCreated)

	for {
		a, c := one.printOne(), two.printOne()
		if !a && !c {
			break
		}
	}
	all := append(append([]uuid.UUID{}, one.printed...), two.printed...)
	require.ElementsMatch(t, orders[1:], all, "each order once, none twice")
	require.NotEmpty(t, one.printed)
	require.NotEmpty(t, two.printed)
	require.Empty(t, b.unprinted(b.sellerA))
}

// An Epson answer holds at most MaxJobs receipts (20); the rest follow.
func TestEpsonServerDirectPrintBatches(t *testing.T) {
	t.Parallel()
	b, clock := setupPrinters(t)
	id, pass := b.printerToken(b.sellerA, "epson-sdp")
	dev := &sdpDevice{b: b, clock: clock, id: id, pass: pass}
	orders := b.orders(25)
	var printed []uuid.UUID
	for jobs := dev.getRequest(); jobs != nil; jobs = dev.getRequest() {
		require.LessOrEqual(t, len(jobs), 20)
		var results [][2]string
		for _, j := range jobs {
			printed = append(printed, j.order(t))
			results = append(results, [2]string{j.PrintJobID, ""})
		}
		dev.setResponse(results).status(http.StatusOK)
	}
	require.Equal(t, orders, printed)
	require.Empty(t, b.unprinted(b.sellerA))
}
