package invoicing

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"

	"github.com/bazaarhq/bazaar/sql/store"
	"github.com/bazaarhq/bazaar/workers"
)

func newTask(typ string, payload any) (*asynq.Task, error) {
	b, err := json.Marshal(payload)
	if err != nil {
		return nil, fmt.Errorf("marshal %s payload: %w", typ, err)
	}
	return asynq.NewTask(typ, b), nil
}

// versioned is implemented by the invoicing payloads.
type versioned interface{ version() int }

func (p InvoiceRunPayload) version() int     { return p.Version }
func (p InvoiceAccountPayload) version() int { return p.Version }

// decode reads a task payload. A payload that does not parse, or is of a
// version this build does not know, fails permanently (SkipRetry), as the
// workers' own payloads do: running it again cannot help.
func decode[P versioned](t *asynq.Task) (P, error) {
	var p P
	if err := json.Unmarshal(t.Payload(), &p); err != nil {
		return p, fmt.Errorf("%s: bad task payload: %w", t.Type(), errors.Join(err, asynq.SkipRetry))
	}
	if v := p.version(); v < 1 || v > workers.PayloadVersion {
		return p, fmt.Errorf("%s: payload version %d, this build reads 1..%d: %w", t.Type(), v, workers.PayloadVersion, asynq.SkipRetry)
	}
	return p, nil
}

// newEvent builds an event carrying the request id and trace context of
// the task that records it.
func newEvent(m workers.Meta, typ, subject string, seller *uuid.UUID, data any) (store.Event, error) {
	e, err := store.NewEvent(typ, subject, seller, 1, data)
	if err != nil {
		return store.Event{}, fmt.Errorf("new %s event: %w", typ, err)
	}
	e.RequestID = m.RequestID
	e.TraceParent = m.TraceParent
	return e, nil
}
