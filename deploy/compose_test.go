package deploy

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"
)

// loadCompose loads a Compose file through compose-go's loader, which
// validates it against the Compose specification's schema, interpolates
// variables (with their defaults: the environment is empty) and resolves
// relative paths.
func loadCompose(t *testing.T, path string) (*types.Project, error) {
	t.Helper()
	opts, err := cli.NewProjectOptions([]string{path},
		cli.WithWorkingDirectory(filepath.Dir(path)),
		cli.WithName("bazaar"),
		cli.WithEnv(nil),
	)
	require.NoError(t, err)
	return opts.LoadProject(context.Background())
}

func TestComposeFile(t *testing.T) {
	t.Parallel()
	p, err := loadCompose(t, "compose.yaml")
	require.NoError(t, err, "compose.yaml does not load")
	known := knownEnv(t)

	var names []string
	for name := range p.Services {
		names = append(names, name)
	}
	require.ElementsMatch(t, []string{
		"postgres", "redis", "migrate", "api", "work", "relay", "schedule", "prometheus", "grafana",
	}, names)

	// The roles run the bazaar image with their subcommand.
	roles := map[string][]string{
		"migrate": {"migrate", "up"}, "api": {"serve"}, "work": {"work"}, "relay": {"relay"}, "schedule": {"schedule"},
	}
	for name, cmd := range roles {
		s := p.Services[name]
		require.Equal(t, cmd, []string(s.Command), "service %s command", name)
		require.NotNil(t, s.Build, "service %s builds the image", name)
		require.Equal(t, "deploy/Dockerfile", s.Build.Dockerfile, "service %s", name)
		_, err := os.Stat(filepath.Join(s.Build.Context, s.Build.Dockerfile))
		require.NoError(t, err, "service %s: build context %s has no %s", name, s.Build.Context, s.Build.Dockerfile)
		for k := range s.Environment {
			require.True(t, known[k], "service %s sets %s, which bazaar does not read", name, k)
		}
		for _, k := range []string{"DATABASE_URL", "REDIS_URL", "BAZAAR_ADMIN_TOKEN"} {
			require.Contains(t, s.Environment, k, "service %s", name)
		}
		if name == "migrate" {
			require.Contains(t, s.DependsOn, "postgres")
			require.Equal(t, types.ServiceConditionHealthy, s.DependsOn["postgres"].Condition)
			continue
		}
		require.Contains(t, s.DependsOn, "migrate", "service %s starts after the migrations", name)
		require.Equal(t, types.ServiceConditionCompletedSuccessfully, s.DependsOn["migrate"].Condition, "service %s", name)

		// Docker must wait longer than the process's own shutdown.
		env := s.Environment["BAZAAR_SHUTDOWN_TIMEOUT"]
		require.NotNil(t, env, "service %s sets BAZAAR_SHUTDOWN_TIMEOUT", name)
		timeout, err := time.ParseDuration(*env)
		require.NoError(t, err)
		require.NotNil(t, s.StopGracePeriod, "service %s stop_grace_period", name)
		require.Greater(t, time.Duration(*s.StopGracePeriod), timeout, "service %s stop_grace_period vs BAZAAR_SHUTDOWN_TIMEOUT", name)
	}

	api := p.Services["api"]
	require.NotNil(t, api.Deploy)
	require.NotNil(t, api.Deploy.Replicas)
	require.Equal(t, 2, *api.Deploy.Replicas, "two API processes")

	redis := p.Services["redis"]
	require.Contains(t, strings.Join(redis.Command, " "), "--appendonly yes", "Redis keeps streams and tasks across restarts")
	require.True(t, slices.ContainsFunc(redis.Volumes, func(v types.ServiceVolumeConfig) bool { return v.Target == "/data" && v.Type == types.VolumeTypeVolume }),
		"Redis keeps its append-only file on a named volume")
	require.NotNil(t, redis.HealthCheck)
	require.NotNil(t, p.Services["postgres"].HealthCheck)

	// Prometheus scrapes every role on BAZAAR_METRICS_ADDR: under serve the
	// API port serves no /metrics.
	raw, err := os.ReadFile("prometheus/prometheus.yml")
	require.NoError(t, err)
	var prom struct {
		ScrapeConfigs []struct {
			JobName      string `json:"job_name"`
			DNSSDConfigs []struct {
				Names []string `json:"names"`
				Port  int      `json:"port"`
			} `json:"dns_sd_configs"`
		} `json:"scrape_configs"`
	}
	require.NoError(t, yaml.Unmarshal(raw, &prom))
	scraped := map[string]int{}
	for _, sc := range prom.ScrapeConfigs {
		for _, sd := range sc.DNSSDConfigs {
			for _, n := range sd.Names {
				scraped[n] = sd.Port
			}
		}
	}
	for _, name := range []string{"api", "work", "relay", "schedule"} {
		addr := p.Services[name].Environment["BAZAAR_METRICS_ADDR"]
		require.NotNil(t, addr, "service %s sets BAZAAR_METRICS_ADDR", name)
		require.Equal(t, *addr, fmt.Sprintf(":%d", scraped[name]), "prometheus.yml scrapes %s on its BAZAAR_METRICS_ADDR", name)
	}

	// "make up" publishes the servers on the ports of DATABASE_URL and REDIS_URL.
	require.Equal(t, "5432", p.Services["postgres"].Ports[0].Published)
	require.Equal(t, "6379", redis.Ports[0].Published)

	// Bind mounts name files that exist, and Grafana gets the dashboard where
	// its provisioning looks.
	for _, name := range []string{"prometheus", "grafana"} {
		for _, v := range p.Services[name].Volumes {
			if v.Type != types.VolumeTypeBind {
				continue
			}
			_, err := os.Stat(v.Source)
			require.NoError(t, err, "service %s mounts %s", name, v.Source)
		}
	}
	require.True(t, slices.ContainsFunc(p.Services["grafana"].Volumes, func(v types.ServiceVolumeConfig) bool {
		return v.Target == grafanaDashboardsPath && strings.HasSuffix(v.Source, filepath.Join("grafana", "dashboards"))
	}), "grafana mounts grafana/dashboards at %s", grafanaDashboardsPath)
	require.True(t, slices.ContainsFunc(p.Services["prometheus"].Volumes, func(v types.ServiceVolumeConfig) bool {
		return v.Target == "/etc/prometheus/rules.yml" && strings.HasSuffix(v.Source, filepath.Join("prometheus", "rules.yml"))
	}), "prometheus loads the alert rules")
}

func TestComposeLoaderValidates(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"unknown service attribute": "services:\n  a:\n    image: x\n    restartt: always\n",
		"bad restart policy type":   "services:\n  a:\n    image: x\n    stop_grace_period: [1]\n",
		"no image and no build":     "services:\n  a:\n    command: [\"x\"]\n",
		"dependency on no service":  "services:\n  a:\n    image: x\n    depends_on: [b]\n",
	}
	for name, doc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "compose.yaml")
			require.NoError(t, os.WriteFile(path, []byte(doc), 0o600))
			_, err := loadCompose(t, path)
			require.Error(t, err)
		})
	}
}
