package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/hibiken/asynq"
	"github.com/jmoiron/sqlx"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/api"
	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/sql/store/storetest"
	"github.com/bazaarhq/bazaar/stream"
	"github.com/bazaarhq/bazaar/stream/redistest"
	"github.com/bazaarhq/bazaar/workers"
)

const monitorToken = "monitor-test-admin-token"

type monitorBundle struct {
	db     *sqlx.DB
	rdb    *redis.Client
	w      *workers.Workers
	insp   *asynq.Inspector
	srv    *httptest.Server
	smtp   string // where the mailer sends; nothing listens until a sink starts
	notify workers.Group
}

// setupMonitor runs workers whose welcome mail has a short retry policy and
// whose mail server is down, and the API with asynqmon mounted.
func setupMonitor(t *testing.T) *monitorBundle {
	t.Helper()
	db, _ := storetest.NewDB(t)
	opt := redistest.DB(t)
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { _ = rdb.Close() })

	// A free port with nothing listening: the mail server is down.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	smtpAddr := ln.Addr().String()
	require.NoError(t, ln.Close())
	host, port, _ := net.SplitHostPort(smtpAddr)
	p, _ := strconv.Atoi(port)
	mailer, err := workers.NewSMTPMailer(workers.SMTPConfig{Host: host, Port: p, TLS: workers.TLSNone, From: "shop@bazaar.test", Timeout: time.Second})
	require.NoError(t, err)

	w, err := workers.New(workers.Config{
		DB: db, Redis: rdb, Mailer: mailer, ShutdownTimeout: 2 * time.Second,
		Retry:    workers.RetryPolicy{Base: 50 * time.Millisecond, Max: 100 * time.Millisecond},
		Policies: map[string]workers.TaskPolicy{workers.TypeEmailWelcome: {MaxRetry: 2, Timeout: 5 * time.Second}},
	})
	require.NoError(t, err)
	require.NoError(t, w.Start(context.Background()))
	t.Cleanup(func() { require.NoError(t, w.Stop(context.Background())) })

	mon := workers.NewMonitor(asynq.RedisClientOpt{Addr: opt.Addr, DB: opt.DB})
	t.Cleanup(func() { _ = mon.Close() })
	a, err := api.New(api.Config{DB: db, AdminToken: monitorToken, Monitor: mon})
	require.NoError(t, err)
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(srv.Close)

	b := &monitorBundle{db: db, rdb: rdb, w: w, insp: asynq.NewInspectorFromRedisClient(rdb), srv: srv, smtp: smtpAddr}
	t.Cleanup(func() { _ = b.insp.Close() })
	for _, g := range w.Groups() {
		if g.Name == workers.GroupNotifications {
			b.notify = g
		}
	}
	return b
}

// register records a user and hands user.registered to the notifications
// group, returning the welcome task's id.
func (b *monitorBundle) register(t *testing.T, email string) string {
	ctx := context.Background()
	var ev store.Event
	err := store.WithTx(ctx, b.db, func(tx *sqlx.Tx) error {
		u, err := store.CreateUser(ctx, tx, store.User{Email: email, Name: "Ada"}, nil)
		if err != nil {
			return err
		}
		ev, err = store.NewUserEvent("user.registered", u, nil)
		if err != nil {
			return err
		}
		return store.InsertEvents(ctx, tx, ev)
	})
	require.NoError(t, err)
	env := stream.EnvelopeOf(ev)
	require.NoError(t, b.notify.Handle(ctx, env))
	return workers.TaskID(workers.GroupNotifications, env.ID, "")
}

func (b *monitorBundle) send(t *testing.T, method, path string, hdr map[string]string) *http.Response {
	req, err := http.NewRequest(method, b.srv.URL+path, nil)
	require.NoError(t, err)
	for k, v := range hdr {
		if v == "SELF" {
			v = b.srv.URL
		}
		req.Header.Set(k, v)
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	return resp
}

func TestMonitorNeedsTheAdminCredentialAndRefusesCrossSiteRequests(t *testing.T) {
	t.Parallel()
	b := setupMonitor(t)
	const passes = 0
	tests := []struct {
		name   string
		method string
		path   string
		hdr    map[string]string
		want   int
	}{
		{"no credential", "GET", "/monitor", nil, 401},
		{"no credential, browser", "GET", "/monitor/", map[string]string{"Accept": "text/html"}, 401},
		{"no credential, api", "GET", "/monitor/api/queues", nil, 401},
		{"wrong token", "GET", "/monitor/api/queues", map[string]string{"Authorization": "Bearer nope"}, 401},
		{"wrong basic password", "GET", "/monitor/api/queues", map[string]string{"Authorization": "Basic " + basic("admin", "nope")}, 401},
		{"forged cookie", "GET", "/monitor/api/queues", map[string]string{"Cookie": "bazaar_session=forged"}, 401},
		{"bearer", "GET", "/monitor/api/queues", map[string]string{"Authorization": "Bearer " + monitorToken}, 200},
		{"basic", "GET", "/monitor/api/queues", map[string]string{"Authorization": "Basic " + basic("admin", monitorToken)}, 200},
		{"root redirects", "GET", "/monitor", map[string]string{"Authorization": "Bearer " + monitorToken}, 302},
		{"login form", "GET", "/monitor/login", nil, 200},
		{
			"cross-site action", "POST", "/monitor/api/queues/default:pause",
			map[string]string{"Authorization": "Bearer " + monitorToken, "Sec-Fetch-Site": "cross-site"},
			403,
		},
		{
			"foreign origin action", "DELETE", "/monitor/api/queues/default/archived_tasks:delete_all",
			map[string]string{"Authorization": "Bearer " + monitorToken, "Origin": "https://evil.example"},
			403,
		},
		{
			"same-origin action", "POST", "/monitor/api/queues/default/archived_tasks:run_all",
			map[string]string{"Authorization": "Bearer " + monitorToken, "Sec-Fetch-Site": "same-origin", "Origin": "SELF"},
			passes,
		},
	}
	for _, tc := range tests {
		resp := b.send(t, tc.method, tc.path, tc.hdr)
		if tc.want == passes {
			// asynqmon answers (the queue may not exist yet); the gates let it.
			require.NotContains(t, []int{401, 403}, resp.StatusCode, tc.name)
			_ = resp.Body.Close()
			continue
		}
		require.Equal(t, tc.want, resp.StatusCode, tc.name)
		_ = resp.Body.Close()
	}
}

func basic(user, pw string) string {
	r, _ := http.NewRequest(http.MethodGet, "http://x", nil)
	r.SetBasicAuth(user, pw)
	return strings.TrimPrefix(r.Header.Get("Authorization"), "Basic ")
}

// With the mail server down, a welcome mail exhausts its retries and is
// archived; a person logs in to /monitor in a real browser, finds it under
// Archived and presses Run; with the mail server back, the mail arrives.
func TestMonitorRunsAnArchivedTaskAgainInABrowser(t *testing.T) {
	const chromium = "/usr/bin/chromium"
	if _, err := os.Stat(chromium); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("CI must run the browser tests: install Chromium at /usr/bin/chromium (.ci/run does)")
		}
		t.Skip("needs Chromium at /usr/bin/chromium (apt-get install chromium)")
	}
	b := setupMonitor(t)
	ctx := context.Background()
	taskID := b.register(t, "archived@example.test")

	require.Eventually(t, func() bool {
		info, err := b.insp.GetTaskInfo(workers.QueueDefault, taskID)
		return err == nil && info.State == asynq.TaskStateArchived
	}, 20*time.Second, 50*time.Millisecond, "welcome mail archived after its retries")
	fails, err := store.TaskFailures(ctx, b.db, workers.TypeEmailWelcome, 10)
	require.NoError(t, err)
	require.Len(t, fails, 1, "final failure recorded in PostgreSQL")
	require.Equal(t, taskID, fails[0].TaskID)

	// The mail server comes back.
	sink := workers.NewMailSink(workers.MailSinkConfig{Addr: b.smtp})
	require.NoError(t, sink.Start(ctx))
	t.Cleanup(func() { _ = sink.Stop(context.Background()) })

	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.Headless, chromedp.DisableGPU,
		chromedp.WindowSize(1400, 1000))...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(allocCtx)
	defer cancelBrowser()
	bctx, cancelTimeout := context.WithTimeout(bctx, 60*time.Second)
	defer cancelTimeout()

	u, _ := url.Parse(b.srv.URL)
	require.NoError(t, chromedp.Do(bctx,
		chromedp.Navigate(u.String()+"/monitor/"),
		chromedp.WaitVisible(chromedp.CSS("#token")),
	), "open the monitor")
	loginTitle, err := chromedp.Run(bctx, chromedp.Title())
	require.NoError(t, err)
	require.Contains(t, loginTitle, "log in", "without a session the monitor asks for the token")
	require.NoError(t, chromedp.Do(bctx,
		chromedp.SendKeys(chromedp.CSS("#token"), monitorToken),
		chromedp.Click(chromedp.CSS("#login")),
		chromedp.WaitVisible(`//*[contains(text(), "Queues")]`),
	), "log in")

	row := `//tr[td[text()="` + workers.TypeEmailWelcome + `"]]`
	require.NoError(t, chromedp.Do(bctx,
		chromedp.Navigate(u.String()+"/monitor/queues/"+workers.QueueDefault+"?status=archived"),
		chromedp.WaitVisible(row),
	), "find the task under Archived")
	rowText, err := chromedp.Run(bctx, chromedp.Text(row))
	require.NoError(t, err)
	require.NoError(t, chromedp.Do(bctx,
		// Hovering the action cell shows its buttons: Delete, then Run.
		chromedp.Click(row+`/td[last()]//button`),
		chromedp.WaitVisible(row+`/td[last()]/button[2]`),
		chromedp.Click(row+`/td[last()]/button[2]`),
	), "run the archived task")
	require.Contains(t, rowText, "connect", "the row shows the SMTP error")

	require.Eventually(t, func() bool { return sink.Count("archived@example.test", "Welcome") == 1 }, 20*time.Second, 50*time.Millisecond,
		"the welcome mail arrives once the task runs again")
	require.Eventually(t, func() bool {
		// A finished task is deleted (workers.DefaultRetention is zero).
		_, err := b.insp.GetTaskInfo(workers.QueueDefault, taskID)
		return errors.Is(err, asynq.ErrTaskNotFound)
	}, 10*time.Second, 50*time.Millisecond)
}

// addOperator creates an operator through the API and returns its credential.
func (b *monitorBundle) addOperator(t *testing.T, name, role string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, b.srv.URL+"/v1/admin/operators", strings.NewReader(`{"name":"`+name+`","role":"`+role+`"}`))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+monitorToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	var out struct {
		Token string `json:"token"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
	return out.Token
}

// A viewer reads the monitor and changes nothing; an operator pauses and
// resumes a queue, and each of those calls lands in the audit log with
// the operator's name and the outcome; a forged or cross-origin action is
// refused and leaves no row.
func TestMonitorRolesAndAudit(t *testing.T) {
	t.Parallel()
	b := setupMonitor(t)
	ctx := context.Background()
	b.register(t, "queue@example.test") // the default queue exists once a task was enqueued
	viewer := b.addOperator(t, "vic", "viewer")
	oper := b.addOperator(t, "ola", "operator")
	self := map[string]string{"Sec-Fetch-Site": "same-origin"}
	as := func(tok string, extra map[string]string) map[string]string {
		h := map[string]string{"Authorization": "Bearer " + tok}
		for k, v := range extra {
			h[k] = v
		}
		return h
	}

	for _, tc := range []struct {
		method, path string
		hdr          map[string]string
		want         int
	}{
		{"GET", "/monitor/api/queues", as(viewer, nil), 200},
		{"POST", "/monitor/api/queues/default:pause", as(viewer, self), 403},
		{"POST", "/monitor/api/queues/default:pause", as(oper, map[string]string{"Sec-Fetch-Site": "cross-site"}), 403},
	} {
		resp := b.send(t, tc.method, tc.path, tc.hdr)
		_ = resp.Body.Close()
		require.Equal(t, tc.want, resp.StatusCode, tc.path)
	}
	rows, _, err := store.ListAuditEntries(ctx, b.db, store.AuditFilter{}, store.Page{Limit: 10})
	require.NoError(t, err)
	for _, r := range rows {
		require.Equal(t, "operator.create", r.Action, "refused calls leave no row")
	}

	resp := b.send(t, "POST", "/monitor/api/queues/default:pause", as(oper, self))
	_ = resp.Body.Close()
	require.Less(t, resp.StatusCode, 300)
	paused, err := b.insp.GetQueueInfo(workers.QueueDefault)
	require.NoError(t, err)
	require.True(t, paused.Paused)
	resp = b.send(t, "POST", "/monitor/api/queues/default:resume", as(oper, self))
	_ = resp.Body.Close()
	require.Less(t, resp.StatusCode, 300)

	rows, _, err = store.ListAuditEntries(ctx, b.db, store.AuditFilter{Actor: "ola"}, store.Page{Limit: 10})
	require.NoError(t, err)
	require.Len(t, rows, 2)
	require.Equal(t, "monitor.queue.resume", rows[0].Action)
	require.Equal(t, "monitor.queue.pause", rows[1].Action)
	for _, r := range rows {
		require.Equal(t, "queue:default", r.Target)
		require.Equal(t, "operator", r.Role)
		require.Equal(t, "ok", r.Result)
		require.NotEmpty(t, r.RequestID)
	}
}
