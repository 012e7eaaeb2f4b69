package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
)

// TaskFailure is the durable record of a task whose last attempt failed.
type TaskFailure struct {
	ID       int64     `db:"id"`
	TaskID   string    `db:"task_id"`
	TaskType string    `db:"task_type"`
	Queue    string    `db:"queue"`
	Payload  []byte    `db:"payload"`
	Error    string    `db:"error"`
	Retried  int       `db:"retried"`
	MaxRetry int       `db:"max_retry"`
	FailedAt time.Time `db:"failed_at"`
}

// RecordTaskFailure stores a final task failure.
func RecordTaskFailure(ctx context.Context, q sqlx.ExtContext, f TaskFailure) error {
	if f.Payload == nil {
		f.Payload = []byte{}
	}
	_, err := sqlx.NamedExecContext(ctx, q, `
INSERT INTO task_failures (task_id, task_type, queue, payload, error, retried, max_retry)
VALUES (:task_id, :task_type, :queue, :payload, :error, :retried, :max_retry)`, f)
	if err != nil {
		return fmt.Errorf("record failure of task %s: %w", f.TaskID, translate(err))
	}
	return nil
}

// TaskFailures lists recorded failures, newest first; taskType "" lists all.
func TaskFailures(ctx context.Context, q sqlx.QueryerContext, taskType string, limit int) ([]TaskFailure, error) {
	out := []TaskFailure{}
	err := sqlx.SelectContext(ctx, q, &out, `
SELECT id, task_id, task_type, queue, payload, error, retried, max_retry, failed_at FROM task_failures
WHERE $1 = '' OR task_type = $1 ORDER BY id DESC LIMIT $2`, taskType, limit)
	if err != nil {
		return nil, fmt.Errorf("task failures: %w", translate(err))
	}
	return out, nil
}
