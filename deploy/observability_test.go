package deploy

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"
)

type dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []templateVar `json:"list"`
	} `json:"templating"`
}

type templateVar struct {
	Name  string `json:"name"`
	Type  string `json:"type"`
	Query string `json:"query"`
}

type panel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	GridPos struct {
		H int `json:"h"`
		W int `json:"w"`
		X int `json:"x"`
		Y int `json:"y"`
	} `json:"gridPos"`
	Targets []struct {
		RefID        string `json:"refId"`
		Expr         string `json:"expr"`
		LegendFormat string `json:"legendFormat"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // the panels of a collapsed row
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	raw, err := os.ReadFile("grafana/dashboards/bazaar.json")
	require.NoError(t, err)
	var d dashboard
	require.NoError(t, json.Unmarshal(raw, &d), "grafana/dashboards/bazaar.json is not valid JSON")
	return d
}

// flatten returns every panel that shows data, with the panels inside rows.
func flatten(ps []panel) []panel {
	var out []panel
	for _, p := range ps {
		if p.Type == "row" {
			out = append(out, flatten(p.Panels)...)
			continue
		}
		out = append(out, p)
	}
	return out
}

func TestDashboardQueriesUseDocumentedMetrics(t *testing.T) {
	t.Parallel()
	docs := documentedMetrics(t)
	d := loadDashboard(t)
	require.Equal(t, "bazaar", d.UID)
	require.NotEmpty(t, d.Title)
	require.Contains(t, d.Templating.List, templateVar{Name: "datasource", Type: "datasource", Query: "prometheus"},
		"the dashboard needs a Prometheus data source variable named datasource")

	panels := flatten(d.Panels)
	require.NotEmpty(t, panels)
	used := map[string]bool{}
	ids := map[int]string{}
	for _, p := range panels {
		require.NotEmpty(t, p.Title, "panel %d has no title", p.ID)
		require.NotContains(t, ids, p.ID, "panels %q and %q share id %d", ids[p.ID], p.Title, p.ID)
		ids[p.ID] = p.Title
		require.NotNil(t, p.Datasource, "panel %q has no data source", p.Title)
		require.Equal(t, "${datasource}", p.Datasource.UID, "panel %q", p.Title)
		require.Positive(t, p.GridPos.W, "panel %q has no width", p.Title)
		require.LessOrEqual(t, p.GridPos.X+p.GridPos.W, 24, "panel %q is wider than the grid", p.Title)
		require.NotEmpty(t, p.Targets, "panel %q has no query", p.Title)
		for _, q := range p.Targets {
			require.NotEmpty(t, q.Expr, "panel %q query %s is empty", p.Title, q.RefID)
			require.Empty(t, checkQuery(q.Expr, q.LegendFormat, docs), "panel %q query %s: %s", p.Title, q.RefID, q.Expr)
			for _, name := range metricNameRe.FindAllString(q.Expr, -1) {
				used[strings.TrimSuffix(name, "_bucket")] = true
			}
		}
	}
	// Every documented metric is on the dashboard: an operator looking for
	// one finds it there.
	for name := range docs {
		require.True(t, used[name], "no dashboard panel shows %s", name)
	}
}

type ruleFile struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []struct {
			Alert       string            `json:"alert,omitempty"`
			Record      string            `json:"record,omitempty"`
			Expr        string            `json:"expr"`
			For         string            `json:"for,omitempty"`
			Labels      map[string]string `json:"labels,omitempty"`
			Annotations map[string]string `json:"annotations,omitempty"`
		} `json:"rules"`
	} `json:"groups"`
}

type ruleTests struct {
	RuleFiles []string `json:"rule_files"`
	Tests     []struct {
		Name          string `json:"name"`
		AlertRuleTest []struct {
			AlertName string           `json:"alertname"`
			ExpAlerts []map[string]any `json:"exp_alerts"`
		} `json:"alert_rule_test"`
	} `json:"tests"`
}

func TestAlertRulesUseDocumentedMetricsAndHaveRunbooks(t *testing.T) {
	t.Parallel()
	docs := documentedMetrics(t)

	raw, err := os.ReadFile("prometheus/rules.yml")
	require.NoError(t, err)
	var rf ruleFile
	require.NoError(t, yaml.UnmarshalStrict(raw, &rf), "prometheus/rules.yml")

	runbooks := map[string]bool{}
	headingRe := regexp.MustCompile(`^### (\S+)\s*$`)
	for _, line := range section(t, "../docs/operations.md", "## Alerts") {
		if m := headingRe.FindStringSubmatch(line); m != nil {
			runbooks[strings.ToLower(m[1])] = true
		}
	}

	raw, err = os.ReadFile("prometheus/rules_test.yml")
	require.NoError(t, err)
	var rt ruleTests
	require.NoError(t, yaml.Unmarshal(raw, &rt), "prometheus/rules_test.yml")
	require.Equal(t, []string{"rules.yml"}, rt.RuleFiles)
	testedFiring := map[string]bool{}
	for _, tc := range rt.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				testedFiring[a.AlertName] = true
			}
		}
	}

	var alerts []string
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			name := r.Alert + r.Record
			require.NotEmpty(t, name, "a rule in group %s has neither alert nor record", g.Name)
			require.Empty(t, checkQuery(r.Expr, "", docs), "rule %s: %s", name, r.Expr)
			if r.Alert == "" {
				continue
			}
			alerts = append(alerts, r.Alert)
			require.Contains(t, []string{"warning", "critical"}, r.Labels["severity"], "alert %s severity", r.Alert)
			require.NotEmpty(t, r.Annotations["summary"], "alert %s summary", r.Alert)
			require.NotEmpty(t, r.Annotations["description"], "alert %s description", r.Alert)
			anchor := strings.ToLower(r.Alert)
			require.Equal(t, "docs/operations.md#"+anchor, r.Annotations["runbook"], "alert %s runbook link", r.Alert)
			require.True(t, runbooks[anchor], "docs/operations.md has no \"### %s\" runbook under Alerts", r.Alert)
			require.True(t, testedFiring[r.Alert], "prometheus/rules_test.yml never shows %s firing", r.Alert)
		}
	}
	for _, want := range []string{
		"BazaarDLQNotEmpty", "BazaarConsumerLagHigh", "BazaarOutboxStale",
		"BazaarArchivedTasksGrowing", "BazaarSchedulerMissedRun", "BazaarSSEDisconnectStorm",
	} {
		require.Contains(t, alerts, want)
	}
	for anchor := range runbooks {
		require.True(t, slices.ContainsFunc(alerts, func(a string) bool { return strings.ToLower(a) == anchor }),
			"docs/operations.md has a runbook for %s, which is no alert in rules.yml", anchor)
	}
}

type provisioning struct {
	APIVersion  int `json:"apiVersion"`
	Datasources []struct {
		Name      string         `json:"name"`
		Type      string         `json:"type"`
		UID       string         `json:"uid"`
		Access    string         `json:"access"`
		URL       string         `json:"url"`
		IsDefault bool           `json:"isDefault"`
		JSONData  map[string]any `json:"jsonData"`
	} `json:"datasources,omitempty"`
	Providers []struct {
		Name            string `json:"name"`
		Folder          string `json:"folder"`
		Type            string `json:"type"`
		DisableDeletion bool   `json:"disableDeletion"`
		AllowUIUpdates  bool   `json:"allowUiUpdates"`
		Options         struct {
			Path string `json:"path"`
		} `json:"options"`
	} `json:"providers,omitempty"`
}

func TestGrafanaProvisioning(t *testing.T) {
	t.Parallel()
	var ds, dash provisioning
	raw, err := os.ReadFile("grafana/provisioning/datasources/prometheus.yaml")
	require.NoError(t, err)
	require.NoError(t, yaml.UnmarshalStrict(raw, &ds))
	raw, err = os.ReadFile("grafana/provisioning/dashboards/bazaar.yaml")
	require.NoError(t, err)
	require.NoError(t, yaml.UnmarshalStrict(raw, &dash))

	require.Len(t, ds.Datasources, 1)
	require.Equal(t, "prometheus", ds.Datasources[0].Type)
	require.Equal(t, "http://prometheus:9090", ds.Datasources[0].URL, "the compose service name and port")
	require.True(t, ds.Datasources[0].IsDefault, "the dashboard's datasource variable picks the default Prometheus")

	require.Len(t, dash.Providers, 1)
	require.Equal(t, "file", dash.Providers[0].Type)
	// compose.yaml mounts grafana/dashboards there; TestComposeFile checks the mount.
	require.Equal(t, grafanaDashboardsPath, dash.Providers[0].Options.Path)
}

const grafanaDashboardsPath = "/var/lib/grafana/dashboards"
