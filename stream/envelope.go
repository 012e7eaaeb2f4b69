// Package stream is Bazaar's event backbone on Redis Streams: the event
// envelope, stream naming, the outbox relay, consumer groups bound by AMQP
// topic patterns, dead letters and redrive, and the SSE hub.
package stream

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"time"

	"github.com/bazaarhq/bazaar/sql/store"
)

// Envelope is an event as it travels on a stream and over SSE: CloudEvents
// 1.0 attribute names plus Bazaar's seller, requestid and traceparent
// extensions, with JSON data.
type Envelope struct {
	ID              string          `json:"id"`
	Type            string          `json:"type"`
	Source          string          `json:"source"`
	SpecVersion     string          `json:"specversion"`
	Time            time.Time       `json:"time"`
	Subject         string          `json:"subject"`
	Seller          string          `json:"seller,omitempty"`
	RequestID       string          `json:"requestid,omitempty"`
	TraceParent     string          `json:"traceparent,omitempty"`
	DataSchema      string          `json:"dataschema,omitempty"`
	DataContentType string          `json:"datacontenttype"`
	Data            json.RawMessage `json:"data"`
}

// EnvelopeOf converts an outbox row into its envelope.
func EnvelopeOf(e store.Event) Envelope {
	env := Envelope{
		ID:              e.ID.String(),
		Type:            e.Type,
		Source:          e.Source,
		SpecVersion:     e.SpecVersion,
		Time:            e.Time.UTC(),
		Subject:         e.Subject,
		RequestID:       e.RequestID,
		TraceParent:     e.TraceParent,
		DataSchema:      e.DataSchema,
		DataContentType: "application/json",
		Data:            e.Data,
	}
	if e.SellerID != nil {
		env.Seller = e.SellerID.String()
	}
	return env
}

// Stream entry field names. type, subject and seller are copied out of the
// envelope so readers can filter without decoding it.
const (
	FieldID       = "id"
	FieldType     = "type"
	FieldSubject  = "subject"
	FieldSeller   = "seller"
	FieldEnvelope = "envelope"
)

// Values returns the fields of the stream entry that carries env.
func (env Envelope) Values() (map[string]any, error) {
	b, err := env.appendJSON(nil)
	if err != nil {
		return nil, err
	}
	return map[string]any{
		FieldID:       env.ID,
		FieldType:     env.Type,
		FieldSubject:  env.Subject,
		FieldSeller:   env.Seller,
		FieldEnvelope: string(b),
	}, nil
}

// fields is Values as the flat field-value list XADD takes, which spares
// the relay a map per event. scratch is reused for the encoding and
// returned grown.
func (env *Envelope) fields(scratch []byte) ([]string, []byte, error) {
	b, err := env.appendJSON(scratch[:0])
	if err != nil {
		return nil, b, err
	}
	return []string{
		FieldID, env.ID,
		FieldType, env.Type,
		FieldSubject, env.Subject,
		FieldSeller, env.Seller,
		FieldEnvelope, string(b),
	}, b, nil
}

// DecodeEnvelope reads the envelope from a stream entry's fields.
func DecodeEnvelope(values map[string]any) (Envelope, error) {
	raw, ok := values[FieldEnvelope].(string)
	if !ok {
		return Envelope{}, fmt.Errorf("stream entry has no %q field", FieldEnvelope)
	}
	var env Envelope
	if err := json.Unmarshal([]byte(raw), &env); err != nil {
		return Envelope{}, fmt.Errorf("decode envelope: %w", err)
	}
	return env, nil
}

// Domains are the streams events are published to, one per domain. An
// event's domain is the first word of its type, mapped through domainAlias.
var Domains = []string{"order", "user", "product", "inventory", "payment", "return", "invoice", "system"}

var domainAlias = map[string]string{
	"invoicing": "invoice",
}

// DomainOf returns the domain stream an event type belongs to. Types whose
// first word is no known domain go to "system".
func DomainOf(eventType string) string {
	first, _, _ := strings.Cut(eventType, ".")
	if d, ok := domainAlias[first]; ok {
		return d
	}
	for _, d := range Domains {
		if d == first {
			return d
		}
	}
	return "system"
}

// Names builds Redis key names. Prefix ends with a colon ("bazaar:").
// Partitions > 1 splits each domain's stream by subject hash; each partition
// carries its own hash tag so Redis Cluster spreads them across slots while
// one subject always lands in one partition, keeping its order.
type Names struct {
	Prefix     string
	Partitions int
}

func (n Names) prefix() string {
	if n.Prefix == "" {
		return "bazaar:"
	}
	return n.Prefix
}

// Stream returns the key of one partition of a domain's stream.
func (n Names) Stream(domain string, partition int) string {
	if n.Partitions <= 1 {
		return n.prefix() + "events:" + domain
	}
	return n.prefix() + "events:{" + domain + ":" + strconv.Itoa(partition) + "}"
}

// Streams returns every partition key of a domain.
func (n Names) Streams(domain string) []string {
	parts := max(n.Partitions, 1)
	out := make([]string, parts)
	for i := range parts {
		out[i] = n.Stream(domain, i)
	}
	return out
}

// ForEvent returns the stream an event goes to.
func (n Names) ForEvent(eventType, subject string) string {
	if n.Partitions <= 1 {
		return n.Stream(DomainOf(eventType), 0)
	}
	h := fnv.New32a()
	h.Write([]byte(subject))
	return n.Stream(DomainOf(eventType), int(h.Sum32()%uint32(n.Partitions)))
}

// DLQ returns the dead-letter stream of a consumer group.
func (n Names) DLQ(group string) string { return n.prefix() + "dlq:" + group }

// Retry returns the redrive stream of a consumer group, read by that group alone.
func (n Names) Retry(group string) string { return n.prefix() + "retry:" + group }

// Patterns is the key where a group's consumers record the topic patterns
// the group subscribes to (Admin.Replay reads them).
func (n Names) Patterns(group string) string { return n.prefix() + "patterns:" + group }

// Paused is the key whose presence holds a consumer group's consumers off
// reading (Admin.PauseGroup); it holds who paused the group and why.
func (n Names) Paused(group string) string { return n.prefix() + "paused:" + group }
