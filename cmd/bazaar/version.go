package main

import (
	"cmp"
	"context"
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// Set at link time by the Makefile's build target:
//
//	go build -ldflags "-X main.version=v1.2.0 -X main.commit=... -X main.buildTime=..."
//
// A plain "go build" or "go install" leaves them empty, and the module
// version and VCS stamp Go records in the binary stand in.
var (
	version   string
	commit    string
	buildTime string
)

// buildInfo is what "bazaar version" prints and bazaar_build_info carries.
type buildInfo struct {
	Version   string
	Commit    string
	Time      string
	GoVersion string
	// Modified is true when the binary was built from a work tree with
	// uncommitted changes (known only from Go's VCS stamp).
	Modified bool
}

func currentBuild() buildInfo {
	bi, _ := debug.ReadBuildInfo()
	return resolveBuild(version, commit, buildTime, bi)
}

// resolveBuild prefers the link-time values and falls back to bi.
func resolveBuild(ver, rev, at string, bi *debug.BuildInfo) buildInfo {
	var b buildInfo
	b.GoVersion = runtime.Version()
	var vcsRev, vcsTime, modVersion string
	if bi != nil {
		if v := bi.Main.Version; v != "" && v != "(devel)" {
			modVersion = v
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				vcsRev = s.Value
			case "vcs.time":
				vcsTime = s.Value
			case "vcs.modified":
				b.Modified = s.Value == "true"
			}
		}
	}
	b.Version = cmp.Or(ver, modVersion, "dev")
	b.Commit = cmp.Or(rev, vcsRev, "unknown")
	b.Time = cmp.Or(at, vcsTime, "unknown")
	return b
}

// buildInfoCollector is the bazaar_build_info gauge, always 1, whose
// labels say which build a process runs.
func buildInfoCollector(b buildInfo) prometheus.Collector {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "bazaar_build_info",
		Help: "Always 1; the labels name the version, commit and Go version of the running binary.",
	}, []string{"version", "commit", "go_version"})
	g.WithLabelValues(b.Version, b.Commit, b.GoVersion).Set(1)
	return g
}

func init() {
	register(&command{
		name:  "version",
		short: "print the version, commit and build time of this binary",
		run: func(_ context.Context, env *environment, _ []string) error {
			b := currentBuild()
			modified := ""
			if b.Modified {
				modified = " (modified)"
			}
			fmt.Fprintf(env.stdout, "bazaar %s\ncommit: %s%s\nbuilt:  %s\ngo:     %s\n", b.Version, b.Commit, modified, b.Time, b.GoVersion)
			return nil
		},
	})
}
