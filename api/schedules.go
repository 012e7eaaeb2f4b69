package api

import (
	"context"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/jmoiron/sqlx"

	"github.com/bazaarhq/bazaar/sql/store"
)

type lastRunDTO struct {
	Period  string    `json:"period"`
	DueAt   time.Time `json:"due_at"`
	FiredAt time.Time `json:"fired_at"`
	TaskID  string    `json:"task_id"`
}

type scheduleDTO struct {
	Name      string      `json:"name"`
	Spec      string      `json:"spec"`
	Timezone  string      `json:"timezone"`
	NextRunAt *time.Time  `json:"next_run_at"`
	LastRun   *lastRunDTO `json:"last_run"`
	CheckedAt time.Time   `json:"checked_at"`
	CheckedBy string      `json:"checked_by"`
}

type scheduleList struct {
	Items []scheduleDTO `json:"items"`
}

func scheduleOut(s store.Schedule) scheduleDTO {
	out := scheduleDTO{
		Name: s.Name, Spec: s.Spec, Timezone: s.Timezone, NextRunAt: s.NextRunAt,
		CheckedAt: s.CheckedAt, CheckedBy: s.CheckedBy,
	}
	if s.LastPeriod != nil && s.LastDueAt != nil && s.LastFired != nil && s.LastTaskID != nil {
		out.LastRun = &lastRunDTO{Period: *s.LastPeriod, DueAt: *s.LastDueAt, FiredAt: *s.LastFired, TaskID: *s.LastTaskID}
	}
	return out
}

// listSchedules: GET /v1/admin/schedules. The schedules are those the
// scheduler holding the lease runs, as it last recorded them (checked_at
// and checked_by tell when and which); a schedule whose checked_at is old
// has no scheduler running it.
func (s *Server) listSchedules(c *gin.Context) {
	s.read(c, func(ctx context.Context, q sqlx.QueryerContext) (any, error) {
		rows, err := store.ListSchedules(ctx, q)
		if err != nil {
			return nil, err
		}
		out := scheduleList{Items: make([]scheduleDTO, len(rows))}
		for i, r := range rows {
			out.Items[i] = scheduleOut(r)
		}
		return out, nil
	})
}
