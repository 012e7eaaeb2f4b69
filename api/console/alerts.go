package console

import (
	"fmt"
	"strconv"
	"time"
)

// Alert is one alert condition of deploy/prometheus/rules.yml evaluated
// on a snapshot. The console checks whether the condition holds now; the
// rule's "for" duration is Prometheus's to apply.
type Alert struct {
	Name     string `json:"name"`
	Severity string `json:"severity"`
	// Firing tells whether the condition holds; Subject says for what
	// (a group, a queue, a schedule), Detail how far past the threshold.
	Firing  bool   `json:"firing"`
	Subject string `json:"subject"`
	Detail  string `json:"detail"`
	// Link is the console page where it is fixed; Runbook its entry in
	// docs/operations.md.
	Link    string `json:"link"`
	Runbook string `json:"runbook"`
	// Unevaluated says why the console cannot evaluate the rule (its
	// numbers live in another process); Prometheus still does.
	Unevaluated string `json:"unevaluated,omitempty"`
}

// The thresholds of deploy/prometheus/rules.yml.
const (
	lagHigh           = 1000
	stuckAfter        = 600 * time.Second
	outboxStaleAfter  = 60 * time.Second
	archivedLookback  = 15 * time.Minute
	scheduleMissAfter = 17*24*time.Hour + 6*time.Hour
	sseStormLookback  = 5 * time.Minute
	sseStormDrops     = 50
)

// ruleNames lists every rule of rules.yml in its order; a test keeps the
// two in step.
var ruleNames = []string{
	"BazaarDLQNotEmpty", "BazaarConsumerLagHigh", "BazaarConsumerStuck", "BazaarOutboxStale",
	"BazaarArchivedTasksGrowing", "BazaarSchedulerMissedRun", "BazaarSSEDisconnectStorm",
	"BazaarHTTPErrors", "BazaarInvoiceRunFailedAccounts", "BazaarEventsInDefaultPartition", "BazaarBreakerOpen",
	"BazaarAuditMissingEvents", "BazaarAuditNotRunning",
}

func runbook(name string) string { return "docs/operations.md#" + lower(name) }

func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// evaluate checks each rule on snap; samples (oldest first, snap's own
// last) serve the rules over a time range. A rule that holds for several
// subjects gives one alert each; one that holds for none gives one alert
// that is not firing.
func evaluate(snap *Snapshot, samples []sample) []Alert {
	var out []Alert
	add := func(a Alert) {
		a.Runbook = runbook(a.Name)
		out = append(out, a)
	}
	quiet := func(name, severity, link string) {
		for _, a := range out {
			if a.Name == name {
				return
			}
		}
		add(Alert{Name: name, Severity: severity, Link: link})
	}

	worst := map[string]int64{}
	for _, g := range snap.Groups {
		worst[g.Name] = max(worst[g.Name], g.DeadLetters)
	}
	for _, name := range sortedKeys(worst) {
		if n := worst[name]; n > 0 {
			add(Alert{
				Name: "BazaarDLQNotEmpty", Severity: "warning", Firing: true, Subject: name,
				Detail: plural(n, "dead letter") + " waiting", Link: Root + "/dlq/" + name,
			})
		}
	}
	quiet("BazaarDLQNotEmpty", "warning", Root+"/dlq")

	for _, g := range snap.Groups {
		if g.Lag != nil && *g.Lag > lagHigh {
			add(Alert{
				Name: "BazaarConsumerLagHigh", Severity: "warning", Firing: true, Subject: g.Name + " on " + g.Stream,
				Detail: plural(*g.Lag, "entry") + " behind", Link: Root + "/groups#" + g.Name,
			})
		}
	}
	quiet("BazaarConsumerLagHigh", "warning", Root+"/groups")

	stuck := map[string]float64{}
	for _, g := range snap.Groups {
		stuck[g.Name] = max(stuck[g.Name], g.OldestPendingAgeSeconds)
	}
	for _, name := range sortedKeys(stuck) {
		if age := time.Duration(stuck[name] * float64(time.Second)); age > stuckAfter {
			add(Alert{
				Name: "BazaarConsumerStuck", Severity: "warning", Firing: true, Subject: name,
				Detail: "an entry unacknowledged for " + age.Round(time.Second).String(), Link: Root + "/groups#" + name,
			})
		}
	}
	quiet("BazaarConsumerStuck", "warning", Root+"/groups")

	if age := time.Duration(snap.Outbox.OldestAgeSeconds * float64(time.Second)); age > outboxStaleAfter {
		add(Alert{
			Name: "BazaarOutboxStale", Severity: "critical", Firing: true, Subject: "outbox",
			Detail: fmt.Sprintf("%s unpublished, the oldest for %s", plural(snap.Outbox.Backlog, "event"), age.Round(time.Second)), Link: Root + "#outbox",
		})
	}
	quiet("BazaarOutboxStale", "critical", Root+"#outbox")

	if base, ok := sampleAgo(samples, snap.At, archivedLookback); ok {
		for _, q := range snap.Queues {
			if grew := q.Archived - base.archived[q.Name]; grew > 0 {
				add(Alert{
					Name: "BazaarArchivedTasksGrowing", Severity: "warning", Firing: true, Subject: q.Name,
					Detail: fmt.Sprintf("%s archived since %s", plural(int64(grew), "task"), base.at.Format("15:04:05")), Link: Root + "/tasks#" + q.Name,
				})
			}
		}
	}
	quiet("BazaarArchivedTasksGrowing", "warning", Root+"/tasks")

	for _, s := range snap.Schedules {
		if s.LastSuccess != nil && snap.At.Sub(*s.LastSuccess) > scheduleMissAfter {
			add(Alert{
				Name: "BazaarSchedulerMissedRun", Severity: "critical", Firing: true, Subject: s.Name,
				Detail: "last success " + s.LastSuccess.Format(time.DateTime), Link: Root + "/invoicing#schedules",
			})
		}
	}
	quiet("BazaarSchedulerMissedRun", "critical", Root+"/invoicing#schedules")

	if base, ok := sampleAgo(samples, snap.At, sseStormLookback); ok && snap.SSEDropped >= base.dropped {
		if n := snap.SSEDropped - base.dropped; n > sseStormDrops {
			add(Alert{
				Name: "BazaarSSEDisconnectStorm", Severity: "warning", Firing: true, Subject: "live clients",
				Detail: plural(int64(n), "slow client") + " dropped", Link: Root + "#clients",
			})
		}
	}
	quiet("BazaarSSEDisconnectStorm", "warning", Root+"#clients")

	add(Alert{Name: "BazaarHTTPErrors", Severity: "critical", Unevaluated: "needs the request rates of every API process: see Prometheus"})

	if snap.FailedAccounts > 0 {
		add(Alert{
			Name: "BazaarInvoiceRunFailedAccounts", Severity: "warning", Firing: true, Subject: "latest invoice run",
			Detail: plural(snap.FailedAccounts, "account") + " failed", Link: Root + "/invoicing",
		})
	}
	quiet("BazaarInvoiceRunFailedAccounts", "warning", Root+"/invoicing")

	add(Alert{Name: "BazaarEventsInDefaultPartition", Severity: "warning", Unevaluated: "the scheduler counts the default partitions' rows (bazaar_event_log_default_rows): see Prometheus"})

	add(Alert{Name: "BazaarBreakerOpen", Severity: "critical", Unevaluated: "the breakers live in the worker processes: see Prometheus"})
	add(Alert{Name: "BazaarAuditMissingEvents", Severity: "critical", Unevaluated: "the relay's consistency audit reports it (bazaar_audit_missing_events); bazaar audit shows the findings"})
	add(Alert{Name: "BazaarAuditNotRunning", Severity: "warning", Unevaluated: "the relay processes run the audit (bazaar_audit_last_run_timestamp_seconds): see Prometheus"})
	return out
}

// sampleAgo returns the oldest sample within lookback of now, if there is
// one older than now itself.
func sampleAgo(samples []sample, now time.Time, lookback time.Duration) (sample, bool) {
	for _, s := range samples {
		if now.Sub(s.at) <= lookback && s.at.Before(now) {
			return s, true
		}
	}
	return sample{}, false
}

func plural(n int64, what string) string {
	s := strconv.FormatInt(n, 10) + " " + what
	if n == 1 {
		return s
	}
	if what == "entry" {
		return strconv.FormatInt(n, 10) + " entries"
	}
	return s + "s"
}
