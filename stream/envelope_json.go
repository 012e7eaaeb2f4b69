package stream

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"
)

// appendJSON appends env as JSON, the same document json.Marshal makes
// (field order, omitempty, escaping, RFC 3339 time, compacted data) without
// reflection: the relay encodes every event it publishes, and the
// reflective encoder was a visible share of its CPU.
func (env *Envelope) appendJSON(b []byte) ([]byte, error) {
	if y := env.Time.Year(); y < 0 || y > 9999 {
		return b, fmt.Errorf("marshal envelope %s: time year %d outside [0,9999]", env.ID, y)
	}
	b = append(b, `{"id":`...)
	b = appendJSONString(b, env.ID)
	b = append(b, `,"type":`...)
	b = appendJSONString(b, env.Type)
	b = append(b, `,"source":`...)
	b = appendJSONString(b, env.Source)
	b = append(b, `,"specversion":`...)
	b = appendJSONString(b, env.SpecVersion)
	b = append(b, `,"time":"`...)
	b = env.Time.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","subject":`...)
	b = appendJSONString(b, env.Subject)
	for _, f := range [...]struct{ key, val string }{
		{`,"seller":`, env.Seller},
		{`,"requestid":`, env.RequestID},
		{`,"traceparent":`, env.TraceParent},
		{`,"dataschema":`, env.DataSchema},
	} {
		if f.val != "" {
			b = append(b, f.key...)
			b = appendJSONString(b, f.val)
		}
	}
	b = append(b, `,"datacontenttype":`...)
	b = appendJSONString(b, env.DataContentType)
	b = append(b, `,"data":`...)
	if len(env.Data) == 0 {
		b = append(b, "null"...)
	} else {
		buf := bytes.NewBuffer(b)
		if err := json.Compact(buf, env.Data); err != nil {
			return b, fmt.Errorf("marshal envelope %s: data: %w", env.ID, err)
		}
		b = buf.Bytes()
	}
	return append(b, '}'), nil
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string escaped as encoding/json
// escapes it: HTML-safe, invalid UTF-8 as U+FFFD, U+2028 and U+2029 escaped.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
