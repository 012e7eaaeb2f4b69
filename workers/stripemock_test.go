package workers

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"
)

// stripeMockVersion is the stripe-mock "make test" installs into bin/.
const stripeMockVersion = "v0.203.0"

// stripeMock is one stripe-mock server shared by the package's tests,
// started on a free port by the first test that needs it and stopped by
// TestMain.
var stripeMock struct {
	once sync.Once
	cmd  *exec.Cmd
	url  string
	err  error
}

// stripeMockPath finds the binary: $STRIPE_MOCK, bin/ of the module (where
// "make test" puts it), or stripe-mock on PATH.
func stripeMockPath() (string, error) {
	if p := os.Getenv("STRIPE_MOCK"); p != "" {
		return p, nil
	}
	p := filepath.Join("..", "bin", "stripe-mock-"+stripeMockVersion)
	if _, err := os.Stat(p); err == nil {
		return filepath.Abs(p)
	}
	return exec.LookPath("stripe-mock")
}

var stripeMockListening = regexp.MustCompile(`Listening for HTTP at address: (\S+)`)

// stripeMockURL returns the base URL of the running stripe-mock. Under CI a
// missing stripe-mock fails the test; elsewhere it skips it.
func stripeMockURL(t testing.TB) string {
	t.Helper()
	stripeMock.once.Do(func() {
		path, err := stripeMockPath()
		if err != nil {
			stripeMock.err = fmt.Errorf("no stripe-mock (make test installs it into bin/): %w", err)
			return
		}
		out, err := os.CreateTemp("", "stripe-mock-*.log")
		if err != nil {
			stripeMock.err = err
			return
		}
		// Both listeners on loopback with ports the kernel picks, so
		// parallel test runs never collide.
		cmd := exec.Command(path, "-http-addr", "127.0.0.1:", "-https-addr", "127.0.0.1:")
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			stripeMock.err = fmt.Errorf("start stripe-mock: %w", err)
			return
		}
		stripeMock.cmd = cmd
		deadline := time.Now().Add(2 * time.Minute)
		for time.Now().Before(deadline) {
			b, _ := os.ReadFile(out.Name())
			if m := stripeMockListening.FindSubmatch(b); m != nil {
				stripeMock.url = "http://" + string(m[1])
				_ = out.Close()
				_ = os.Remove(out.Name())
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		b, _ := os.ReadFile(out.Name())
		stripeMock.err = fmt.Errorf("stripe-mock did not listen: %s", b)
	})
	if stripeMock.err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI must run the Stripe tests: %v", stripeMock.err)
		}
		t.Skip(stripeMock.err)
	}
	return stripeMock.url
}

func stopStripeMock() {
	if stripeMock.cmd != nil && stripeMock.cmd.Process != nil {
		_ = stripeMock.cmd.Process.Kill()
		_ = stripeMock.cmd.Wait()
	}
}

// withStripeMock stops the shared stripe-mock when the tests are done.
type withStripeMock struct{ m *testing.M }

func (w withStripeMock) Run() int {
	defer stopStripeMock()
	return w.m.Run()
}

// stripeCall is one request the library sent, as the recorder saw it.
type stripeCall struct {
	Method, Path   string
	IdempotencyKey string
	Form           url.Values
}

// stripeRecorder stands between the gateway and stripe-mock: it records
// every request and forwards it, unless a fault is set for it. Stripe's
// stateful answers (a decline, 3-D Secure, a lost connection), which the
// stateless stripe-mock cannot give, are played here.
type stripeRecorder struct {
	srv *httptest.Server

	mu    sync.Mutex
	calls []stripeCall
	// fault, when set, answers the n-th request (from 1) instead of
	// stripe-mock, or after it (see rewrite and drop).
	fault func(n int, w http.ResponseWriter, r *http.Request, forward func() *httptest.ResponseRecorder) bool
}

func newStripeRecorder(t testing.TB) *stripeRecorder {
	base, err := url.Parse(stripeMockURL(t))
	if err != nil {
		t.Fatal(err)
	}
	rec := &stripeRecorder{}
	proxy := httputil.NewSingleHostReverseProxy(base)
	tr := &http.Transport{}
	proxy.Transport = tr
	t.Cleanup(tr.CloseIdleConnections)
	rec.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		form, _ := url.ParseQuery(string(body))
		rec.mu.Lock()
		rec.calls = append(rec.calls, stripeCall{Method: r.Method, Path: r.URL.Path, IdempotencyKey: r.Header.Get("Idempotency-Key"), Form: form})
		n := len(rec.calls)
		fault := rec.fault
		rec.mu.Unlock()
		//nolint:contextcheck // forwards the request with its own context
		forward := func() *httptest.ResponseRecorder {
			out := httptest.NewRecorder()
			r2 := r.Clone(r.Context())
			r2.Body = io.NopCloser(bytes.NewReader(body))
			r2.ContentLength = int64(len(body))
			proxy.ServeHTTP(out, r2)
			return out
		}
		if fault != nil && fault(n, w, r, forward) {
			return
		}
		out := forward()
		for k, v := range out.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(out.Code)
		_, _ = w.Write(out.Body.Bytes())
	}))
	t.Cleanup(rec.srv.Close)
	return rec
}

// gateway returns a StripeGateway talking to the recorder, with an HTTP
// client of its own that the test closes.
func (r *stripeRecorder) gateway(t testing.TB, retries int64) *StripeGateway {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	g, err := NewStripeGateway(StripeConfig{ //nolint:gosec // stripe-mock takes any test key
		SecretKey: "sk_test_bazaar", APIBase: r.srv.URL, MaxNetworkRetries: retries,
		HTTPClient: &http.Client{Transport: tr, Timeout: 20 * time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// withStatus forwards a PaymentIntent create to stripe-mock and answers
// its reply with status (and next_action when given) rewritten, as Stripe
// answers a card it charged or one that needs 3-D Secure.
func withStatus(status string, nextAction map[string]any) func(int, http.ResponseWriter, *http.Request, func() *httptest.ResponseRecorder) bool {
	return func(_ int, w http.ResponseWriter, r *http.Request, forward func() *httptest.ResponseRecorder) bool {
		if r.URL.Path != "/v1/payment_intents" {
			return false
		}
		out := forward()
		var pi map[string]any
		if err := json.Unmarshal(out.Body.Bytes(), &pi); err != nil || out.Code != http.StatusOK {
			answer(w, out.Code, out.Body.String())
			return true
		}
		pi["status"], pi["next_action"], pi["last_payment_error"] = status, nextAction, nil
		b, _ := json.Marshal(pi)
		answer(w, http.StatusOK, string(b))
		return true
	}
}

func (r *stripeRecorder) setFault(f func(n int, w http.ResponseWriter, r *http.Request, forward func() *httptest.ResponseRecorder) bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fault = f
}

func (r *stripeRecorder) Calls(path string) []stripeCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []stripeCall
	for _, c := range r.calls {
		if c.Path == path {
			out = append(out, c)
		}
	}
	return out
}

// answer writes a JSON reply as Stripe would.
func answer(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Request-Id", "req_test")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

// signStripe signs a webhook payload as Stripe does: t=<unix>,v1=<hex
// HMAC-SHA256 of "<t>.<payload>" keyed by the endpoint secret>.
func signStripe(secret string, payload []byte, at time.Time) string {
	ts := strconv.FormatInt(at.Unix(), 10)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts + "." + string(payload)))
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac.Sum(nil))
}
