package workers

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
	"github.com/wneessen/go-mail"
)

// Mail is one message to send.
type Mail struct {
	To          []string
	Subject     string
	Text        string
	Attachments []Attachment
}

// Attachment is a file sent with a Mail.
type Attachment struct {
	Name        string
	ContentType string
	Data        []byte
}

// Mailer sends mail.
type Mailer interface {
	Send(ctx context.Context, m Mail) error
}

// TLS modes of SMTPConfig.
const (
	// TLSStartTLS upgrades a plain connection with STARTTLS and refuses a
	// server that does not offer it.
	TLSStartTLS = "starttls"
	// TLSOpportunistic uses STARTTLS when the server offers it.
	TLSOpportunistic = "opportunistic"
	// TLSImplicit connects over TLS from the first byte (port 465).
	TLSImplicit = "tls"
	// TLSNone sends in clear text: only for a server on the same machine
	// or the development mail sink.
	TLSNone = "none"
)

// SMTPConfig is where and how mail is sent.
type SMTPConfig struct {
	Host string
	Port int
	// Username and Password enable SMTP AUTH (PLAIN or LOGIN, as the
	// server offers) when Username is set.
	Username string
	Password string
	// TLS is one of TLSStartTLS (default), TLSOpportunistic, TLSImplicit, TLSNone.
	TLS string
	// From is the sender address of every mail.
	From string
	// Timeout bounds connecting and each command (default 10s).
	Timeout time.Duration
}

// SMTPMailer sends mail through an SMTP server with go-mail, one
// connection per mail: workers send few enough mails that a pool is not
// worth its failure modes.
type SMTPMailer struct {
	cfg  SMTPConfig
	opts []mail.Option
}

// NewSMTPMailer validates cfg and returns a mailer.
func NewSMTPMailer(cfg SMTPConfig) (*SMTPMailer, error) {
	if cfg.Host == "" {
		return nil, errors.New("smtp: Host is required")
	}
	if cfg.From == "" {
		return nil, errors.New("smtp: From is required")
	}
	cfg.TLS = cmp.Or(cfg.TLS, TLSStartTLS)
	cfg.Timeout = cmp.Or(cfg.Timeout, 10*time.Second)
	opts := []mail.Option{mail.WithTimeout(cfg.Timeout)}
	switch cfg.TLS {
	case TLSStartTLS:
		opts = append(opts, mail.WithTLSPolicy(mail.TLSMandatory))
	case TLSOpportunistic:
		opts = append(opts, mail.WithTLSPolicy(mail.TLSOpportunistic))
	case TLSImplicit:
		opts = append(opts, mail.WithSSL())
	case TLSNone:
		opts = append(opts, mail.WithTLSPolicy(mail.NoTLS))
	default:
		return nil, fmt.Errorf("smtp: TLS %q is not one of starttls, opportunistic, tls, none", cfg.TLS)
	}
	if cfg.Port > 0 {
		opts = append(opts, mail.WithPort(cfg.Port))
	}
	if cfg.Username != "" {
		opts = append(opts, mail.WithSMTPAuth(mail.SMTPAuthAutoDiscover),
			mail.WithUsername(cfg.Username), mail.WithPassword(cfg.Password))
	}
	return &SMTPMailer{cfg: cfg, opts: opts}, nil
}

// Send delivers m. A refusal by the server with a permanent (5xx) reply,
// such as an unknown recipient, is wrapped in asynq.SkipRetry; anything
// else (server down, timeout, 4xx) is worth retrying.
func (s *SMTPMailer) Send(ctx context.Context, m Mail) error {
	msg := mail.NewMsg()
	if err := msg.From(s.cfg.From); err != nil {
		return fmt.Errorf("mail from %q: %w", s.cfg.From, err)
	}
	if err := msg.To(m.To...); err != nil {
		return fmt.Errorf("mail to %v: %w", m.To, errors.Join(err, asynq.SkipRetry))
	}
	msg.Subject(m.Subject)
	msg.SetDate()
	msg.SetMessageID()
	msg.SetBodyString(mail.TypeTextPlain, m.Text)
	for _, a := range m.Attachments {
		var opts []mail.FileOption
		if a.ContentType != "" {
			opts = append(opts, mail.WithFileContentType(mail.ContentType(a.ContentType)))
		}
		if err := msg.AttachReader(a.Name, bytes.NewReader(a.Data), opts...); err != nil {
			return fmt.Errorf("attach %s: %w", a.Name, err)
		}
	}
	c, err := mail.NewClient(s.cfg.Host, s.opts...)
	if err != nil {
		return fmt.Errorf("smtp client: %w", err)
	}
	if err := c.DialAndSendWithContext(ctx, msg); err != nil {
		var se *mail.SendError
		if errors.As(err, &se) && se.ErrorCode() >= 500 && se.ErrorCode() < 600 {
			return fmt.Errorf("send mail %q: %w", m.Subject, errors.Join(err, asynq.SkipRetry))
		}
		return fmt.Errorf("send mail %q: %w", m.Subject, err)
	}
	return nil
}
