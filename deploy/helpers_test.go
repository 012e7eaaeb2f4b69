package deploy

import (
	"bufio"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// metricDoc is one row of the metrics reference in docs/operations.md.
type metricDoc struct {
	kind   string // counter, gauge or histogram
	labels []string
}

var (
	metricRowRe  = regexp.MustCompile("^\\| `(bazaar_[a-z0-9_]+)` \\| (counter|gauge|histogram) \\|([^|]*)\\|")
	backtickedRe = regexp.MustCompile("`([a-z_]+)`")
)

// documentedMetrics reads the metrics reference of docs/operations.md, the
// one list of names and labels that the dashboard and the rules may use.
func documentedMetrics(t *testing.T) map[string]metricDoc {
	t.Helper()
	lines := section(t, "../docs/operations.md", "## Metrics reference")
	docs := map[string]metricDoc{}
	for _, line := range lines {
		m := metricRowRe.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		var labels []string
		for _, l := range backtickedRe.FindAllStringSubmatch(m[3], -1) {
			labels = append(labels, l[1])
		}
		require.NotContains(t, docs, m[1], "docs/operations.md lists %s twice", m[1])
		docs[m[1]] = metricDoc{kind: m[2], labels: labels}
	}
	require.NotEmpty(t, docs, "no metrics found in the metrics reference of docs/operations.md")
	return docs
}

// section returns the lines of a markdown file under the given "## " heading,
// up to the next heading of the same level.
func section(t *testing.T, path, heading string) []string {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	var (
		lines []string
		in    bool
	)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "## ") {
			in = line == heading
			continue
		}
		if in {
			lines = append(lines, line)
		}
	}
	require.NoError(t, sc.Err())
	require.NotEmpty(t, lines, "%s has no section %q", path, heading)
	return lines
}

// runtimeEnv are variables the Go runtime reads rather than the binary's config.
var runtimeEnv = []string{"GOMEMLIMIT", "GOMAXPROCS", "GOGC"}

var envNameRe = regexp.MustCompile(`^(DATABASE_URL|REDIS_URL|BAZAAR_[A-Z0-9_]+|OTEL_[A-Z0-9_]+)$`)

// knownEnv collects the environment variables cmd/bazaar reads: every string
// literal in its sources that looks like one. cmd/bazaar is the only package
// that reads the environment, so a deployment file setting anything else sets
// a variable nobody reads (a typo, or a setting that was removed).
func knownEnv(t *testing.T) map[string]bool {
	t.Helper()
	files, err := filepath.Glob("../cmd/bazaar/*.go")
	require.NoError(t, err)
	known := map[string]bool{}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		require.NoError(t, err)
		ast.Inspect(f, func(n ast.Node) bool {
			lit, ok := n.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			if s, err := strconv.Unquote(lit.Value); err == nil && envNameRe.MatchString(s) {
				known[s] = true
			}
			return true
		})
	}
	require.Contains(t, known, "DATABASE_URL", "found no configuration variables in cmd/bazaar")
	for _, v := range runtimeEnv {
		known[v] = true
	}
	return known
}

var (
	metricNameRe = regexp.MustCompile(`\bbazaar_[a-z0-9_]+`)
	selectorRe   = regexp.MustCompile(`\b(bazaar_[a-z0-9_]+)\s*\{([^}]*)\}`)
	matcherRe    = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)`)
	groupingRe   = regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)
	quotedRe     = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	legendRe     = regexp.MustCompile(`\{\{\s*\.?([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}`)
)

// targetLabels are attached by Prometheus to every scraped series (role comes
// from deploy/prometheus/prometheus.yml's relabelling).
var targetLabels = []string{"instance", "job", "role"}

// checkQuery returns what is wrong with a PromQL expression: metrics that
// docs/operations.md does not list, and labels those metrics do not carry,
// in selectors, in by/without clauses and in the legend template.
func checkQuery(expr, legend string, docs map[string]metricDoc) []string {
	var problems []string
	allowed := slices.Clone(targetLabels)
	labelsOf := map[string][]string{}
	for _, name := range metricNameRe.FindAllString(expr, -1) {
		d, ok := docs[name]
		switch {
		case ok:
			labelsOf[name] = append(slices.Clone(d.labels), targetLabels...)
		case strings.HasSuffix(name, "_bucket") && docs[strings.TrimSuffix(name, "_bucket")].kind == "histogram":
			labelsOf[name] = append(slices.Clone(docs[strings.TrimSuffix(name, "_bucket")].labels), append(targetLabels, "le")...)
		case strings.HasSuffix(name, "_sum") && docs[strings.TrimSuffix(name, "_sum")].kind == "histogram":
			labelsOf[name] = append(slices.Clone(docs[strings.TrimSuffix(name, "_sum")].labels), targetLabels...)
		case strings.HasSuffix(name, "_count") && docs[strings.TrimSuffix(name, "_count")].kind == "histogram":
			labelsOf[name] = append(slices.Clone(docs[strings.TrimSuffix(name, "_count")].labels), targetLabels...)
		default:
			problems = append(problems, "metric "+name+" is not in the metrics reference of docs/operations.md")
			continue
		}
		allowed = append(allowed, labelsOf[name]...)
	}
	if len(labelsOf) == 0 && len(problems) == 0 {
		problems = append(problems, "query uses no bazaar_ metric")
	}
	for _, m := range selectorRe.FindAllStringSubmatch(expr, -1) {
		labels, ok := labelsOf[m[1]]
		if !ok {
			continue
		}
		for _, lm := range matcherRe.FindAllStringSubmatch(quotedRe.ReplaceAllString(m[2], `""`), -1) {
			if !slices.Contains(labels, lm[1]) {
				problems = append(problems, "label "+lm[1]+" is not a label of "+m[1])
			}
		}
	}
	for _, g := range groupingRe.FindAllStringSubmatch(expr, -1) {
		for l := range strings.SplitSeq(g[1], ",") {
			if l = strings.TrimSpace(l); l != "" && !slices.Contains(allowed, l) {
				problems = append(problems, "grouping label "+l+" is not a label of the query's metrics")
			}
		}
	}
	for _, m := range legendRe.FindAllStringSubmatch(legend, -1) {
		if !slices.Contains(allowed, m[1]) {
			problems = append(problems, "legend label "+m[1]+" is not a label of the query's metrics")
		}
	}
	return problems
}

func TestCheckQuery(t *testing.T) {
	t.Parallel()
	docs := map[string]metricDoc{
		"bazaar_dlq_depth":                     {kind: "gauge", labels: []string{"group"}},
		"bazaar_http_request_duration_seconds": {kind: "histogram", labels: []string{"route", "method"}},
	}
	tests := []struct {
		name, expr, legend string
		wantProblems       int
	}{
		{"documented gauge", `max by (group) (bazaar_dlq_depth{group="orders"})`, "{{group}}", 0},
		{"histogram bucket with le", `histogram_quantile(0.9, sum by (route, le) (rate(bazaar_http_request_duration_seconds_bucket[5m])))`, "{{route}}", 0},
		{"target label", `sum by (instance) (bazaar_dlq_depth)`, "{{instance}}", 0},
		{"undocumented metric", `sum(bazaar_dlq_size)`, "", 1},
		{"suffix on a gauge", `sum(bazaar_dlq_depth_count)`, "", 1},
		{"unknown selector label", `bazaar_dlq_depth{queue="x"}`, "", 1},
		{"quoted value that looks like a matcher", `bazaar_dlq_depth{group="a=b"}`, "", 0},
		{"unknown grouping label", `sum by (consumer_group) (bazaar_dlq_depth)`, "", 1},
		{"unknown legend label", `sum by (group) (bazaar_dlq_depth)`, "{{stream}}", 1},
		{"no bazaar metric", `vector(1)`, "", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := checkQuery(tt.expr, tt.legend, docs)
			require.Len(t, got, tt.wantProblems, "problems: %v", got)
		})
	}
}
