package workers

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// SinkMail is a mail the development sink received.
type SinkMail struct {
	ID         int
	ReceivedAt time.Time
	From       string
	To         []string
	Subject    string
	// Text is the first text/plain part, decoded.
	Text string
	// Raw is the message as received.
	Raw []byte
}

// MailSink is an SMTP server that keeps what it receives in memory, for
// development ("bazaar dev" lists them at /dev/mail) and tests. It accepts
// any sender and recipient, needs no authentication and speaks no TLS, so
// it listens on loopback only unless told otherwise.
type MailSink struct {
	addr string
	max  int
	log  *slog.Logger

	mu     sync.Mutex
	mails  []SinkMail
	nextID int
	srv    *smtp.Server
	ln     net.Listener
	done   chan struct{}

	// beforeReply, when set by tests, runs after a message's data arrived
	// and before the sink answers it, so a test can hold the reply.
	beforeReply func(SinkMail)
}

// MailSinkConfig configures a MailSink.
type MailSinkConfig struct {
	// Addr to listen on; default "127.0.0.1:0" (a free port, see Addr).
	Addr string
	// Keep is how many mails are kept, the oldest dropped first (default 500).
	Keep   int
	Logger *slog.Logger
}

// NewMailSink returns a sink; Start makes it listen.
func NewMailSink(cfg MailSinkConfig) *MailSink {
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.Keep <= 0 {
		cfg.Keep = 500
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &MailSink{addr: cfg.Addr, max: cfg.Keep, log: cfg.Logger}
}

// Start listens and serves until Stop.
func (s *MailSink) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return errors.New("mail sink: already started")
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", s.addr)
	if err != nil {
		return fmt.Errorf("mail sink: listen on %s: %w", s.addr, err)
	}
	srv := smtp.NewServer(sinkBackend{s})
	srv.Domain = "bazaar-dev-mail"
	srv.ReadTimeout = 30 * time.Second
	srv.WriteTimeout = 30 * time.Second
	srv.MaxMessageBytes = 25 << 20
	srv.MaxRecipients = 100
	s.srv, s.ln, s.done = srv, ln, make(chan struct{})
	go func() {
		defer close(s.done)
		_ = srv.Serve(ln) // returns when Stop closes the listener
	}()
	s.log.Info("development mail sink listening", "addr", ln.Addr().String())
	return nil
}

// Stop closes the listener and open connections. It may be called twice
// or without Start.
func (s *MailSink) Stop(ctx context.Context) error {
	s.mu.Lock()
	srv, ln, done := s.srv, s.ln, s.done
	s.srv = nil
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	err := srv.Shutdown(ctx)
	if err != nil {
		_ = srv.Close()
	}
	// Shutdown closes only listeners Serve has registered; a Stop right
	// after Start may come first, so close ours too to end Serve's Accept.
	_ = ln.Close()
	<-done
	if errors.Is(err, smtp.ErrServerClosed) {
		err = nil
	}
	return err
}

// Addr is the address the sink listens on ("" before Start).
func (s *MailSink) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Mails returns the kept mails, newest first.
func (s *MailSink) Mails() []SinkMail {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]SinkMail, len(s.mails))
	for i, m := range s.mails {
		out[len(s.mails)-1-i] = m
	}
	return out
}

// Count returns how many kept mails match: to (a recipient, "" for any)
// and a subject containing subject.
func (s *MailSink) Count(to, subject string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, m := range s.mails {
		if strings.Contains(m.Subject, subject) && (to == "" || containsFold(m.To, to)) {
			n++
		}
	}
	return n
}

func containsFold(list []string, s string) bool {
	for _, v := range list {
		if strings.EqualFold(v, s) {
			return true
		}
	}
	return false
}

func (s *MailSink) add(m SinkMail) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextID++
	m.ID = s.nextID
	s.mails = append(s.mails, m)
	if len(s.mails) > s.max {
		s.mails = s.mails[len(s.mails)-s.max:]
	}
}

type sinkBackend struct{ s *MailSink }

func (b sinkBackend) NewSession(*smtp.Conn) (smtp.Session, error) {
	return &sinkSession{sink: b.s}, nil
}

type sinkSession struct {
	sink *MailSink
	from string
	to   []string
}

func (x *sinkSession) Mail(from string, _ *smtp.MailOptions) error {
	x.from = from
	return nil
}

func (x *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	x.to = append(x.to, to)
	return nil
}

func (x *sinkSession) Data(r io.Reader) error {
	raw, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	m := SinkMail{ReceivedAt: time.Now().UTC(), From: x.from, To: x.to, Raw: raw}
	if msg, err := mail.ReadMessage(bytes.NewReader(raw)); err == nil {
		dec := new(mime.WordDecoder)
		if subj, err := dec.DecodeHeader(msg.Header.Get("Subject")); err == nil {
			m.Subject = subj
		} else {
			m.Subject = msg.Header.Get("Subject")
		}
		m.Text = textOf(msg.Header.Get("Content-Type"), msg.Header.Get("Content-Transfer-Encoding"), msg.Body)
	}
	if x.sink.beforeReply != nil {
		x.sink.beforeReply(m)
	}
	x.sink.add(m)
	x.sink.log.Info("mail received", "to", strings.Join(m.To, ","), "subject", m.Subject)
	return nil
}

func (x *sinkSession) Reset()        { x.from, x.to = "", nil }
func (x *sinkSession) Logout() error { return nil }

// textOf returns the first text/plain part of a body, decoded.
func textOf(contentType, encoding string, body io.Reader) string {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		mt = "text/plain"
	}
	if strings.HasPrefix(mt, "multipart/") {
		mr := multipart.NewReader(body, params["boundary"])
		for {
			p, err := mr.NextRawPart()
			if err != nil {
				return ""
			}
			if t := textOf(p.Header.Get("Content-Type"), p.Header.Get("Content-Transfer-Encoding"), p); t != "" {
				return t
			}
		}
	}
	if mt != "text/plain" {
		return ""
	}
	b, err := io.ReadAll(decodeTransfer(encoding, body))
	if err != nil {
		return ""
	}
	return strings.ReplaceAll(string(b), "\r\n", "\n")
}

func decodeTransfer(encoding string, r io.Reader) io.Reader {
	switch strings.ToLower(strings.TrimSpace(encoding)) {
	case "quoted-printable":
		return quotedprintable.NewReader(r)
	case "base64":
		return base64.NewDecoder(base64.StdEncoding, r)
	}
	return r
}
