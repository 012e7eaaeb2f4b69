package console

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"
)

// RedriveState is the progress of a redrive of all of a group's dead
// letters at a rate.
type RedriveState struct {
	Group     string     `json:"group"`
	Rate      int        `json:"rate"`
	Moved     int        `json:"moved"`
	Total     int        `json:"total"`
	StartedBy string     `json:"started_by"`
	StartedAt time.Time  `json:"started_at"`
	Running   bool       `json:"running"`
	Cancelled bool       `json:"cancelled"`
	Error     string     `json:"error,omitempty"`
	EndedAt   *time.Time `json:"ended_at"`
}

// redriveJob is one redrive running in this process.
type redriveJob struct {
	cancel context.CancelFunc
	done   chan struct{}
	state  RedriveState
}

// jobs are the redrives this process runs, at most one per group; the
// last one of each group stays listed once it ended.
type jobs struct {
	mu      sync.Mutex
	byGroup map[string]*redriveJob
	wg      sync.WaitGroup
}

// start runs fn in its own goroutine unless a redrive of group is running;
// fn reports progress through its callback.
func (j *jobs) start(group string, st RedriveState, fn func(ctx context.Context, progress func(moved, total int)) (int, error)) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	if old := j.byGroup[group]; old != nil && old.state.Running {
		return false
	}
	ctx, cancel := context.WithCancel(context.Background())
	st.Running = true
	job := &redriveJob{cancel: cancel, done: make(chan struct{}), state: st}
	j.byGroup[group] = job
	j.wg.Add(1)
	go func() {
		defer j.wg.Done()
		defer close(job.done)
		defer cancel()
		moved, err := fn(ctx, func(m, total int) {
			j.mu.Lock()
			job.state.Moved, job.state.Total = m, total
			j.mu.Unlock()
		})
		j.mu.Lock()
		defer j.mu.Unlock()
		now := time.Now()
		job.state.Running, job.state.Moved, job.state.EndedAt = false, moved, &now
		if err != nil {
			if ctx.Err() != nil {
				job.state.Cancelled = true
			} else {
				job.state.Error = err.Error()
			}
		}
	}()
	return true
}

// cancel stops the running redrive of group and waits for it to end;
// false when none runs.
func (j *jobs) cancel(group string) (RedriveState, bool) {
	j.mu.Lock()
	job := j.byGroup[group]
	j.mu.Unlock()
	if job == nil {
		return RedriveState{}, false
	}
	job.cancel()
	<-job.done
	j.mu.Lock()
	defer j.mu.Unlock()
	return job.state, true
}

func (j *jobs) states() []RedriveState {
	j.mu.Lock()
	defer j.mu.Unlock()
	out := make([]RedriveState, 0, len(j.byGroup))
	for _, job := range j.byGroup {
		out = append(out, job.state)
	}
	slices.SortFunc(out, func(a, b RedriveState) int { return strings.Compare(a.Group, b.Group) })
	return out
}

func (j *jobs) state(group string) *RedriveState {
	j.mu.Lock()
	defer j.mu.Unlock()
	if job := j.byGroup[group]; job != nil {
		st := job.state
		return &st
	}
	return nil
}

func (j *jobs) stopAll() {
	j.mu.Lock()
	for _, job := range j.byGroup {
		job.cancel()
	}
	j.mu.Unlock()
	j.wg.Wait()
}
