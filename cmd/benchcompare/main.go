// Command benchcompare runs, in one go on this machine, each of Bazaar's
// throughput and latency benchmarks beside the baseline of the machine's
// own limit, and prints one Markdown table of the figures and ratios
// ("make bench/compare"; docs/benchmarks.md explains each row).
//
// The Go benchmarks start what they need themselves (their own PostgreSQL
// databases at TEST_DATABASE_URL and their own redis-server); this program
// starts a redis-server of its own for redis-benchmark and stops it at the
// end. Run it from the module root.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "benchcompare:", err)
		os.Exit(1)
	}
}

// bench is one Go benchmark run: its package, pattern, count and extra
// environment.
type bench struct {
	pkg, pattern, benchtime string
	env                     []string
}

// result holds the metrics of every benchmark line printed, by benchmark
// name (without the -GOMAXPROCS suffix) and unit.
type result map[string]map[string]float64

var benchLine = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+\d+\s+(.*)$`)

// parseBench reads "BenchmarkX-2  1  123 ns/op  4.5 orders/s ..." lines.
func parseBench(out []byte, into result) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		m := benchLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		f := strings.Fields(m[2])
		metrics := into[m[1]]
		if metrics == nil {
			metrics = map[string]float64{}
			into[m[1]] = metrics
		}
		for i := 0; i+1 < len(f); i += 2 {
			if v, err := strconv.ParseFloat(f[i], 64); err == nil {
				metrics[f[i+1]] = v
			}
		}
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("benchcompare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	relayEvents := fs.Int("relay-events", 100_000, "events the relay drains (the backlog BenchmarkRelayDrain builds)")
	relayPattern := fs.String("relay-bench", "^BenchmarkRelayDrain$/^lanes=2$", "the relay benchmark to run (its fastest result is the row); BenchmarkRelayDrain drains 100,000 events per iteration, once per lane count (1, 2, 4; 2 is the default)")
	tasks := fs.Int("tasks", 5000, "tasks per side of the task benchmark")
	only := fs.String("only", "", "run only the rows whose name contains this (orders, xadd, relay, tasks, latency, sse, invoicing, fairness)")
	flood := fs.Int("flood", 2_000, "orders of the big seller in the fairness benchmark (make bench/fairness runs 10,000; at that size the row alone outlasts the run's 10 minutes)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	want := func(name string) bool { return *only == "" || strings.Contains(name, *only) }
	start := time.Now()
	res := result{}
	var rows [][4]string
	add := func(path, bazaar, baseline, ratio string) {
		rows = append(rows, [4]string{path, bazaar, baseline, ratio})
	}
	var failures []string
	gotest := func(b bench) error {
		fmt.Fprintf(stderr, "benchcompare: %s %s (%s)\n", b.pkg, b.pattern, time.Since(start).Round(time.Second))
		//nolint:gosec // the program's own benchmark list and flags
		cmd := exec.CommandContext(ctx, "go", "test", "-run", "^$", "-bench", b.pattern, "-benchtime", b.benchtime, "-count", "1", "-timeout", "15m", b.pkg)
		cmd.Env = append(os.Environ(), b.env...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		parseBench(out.Bytes(), res)
		if err != nil {
			// One failed benchmark leaves its row out; the others still run.
			fmt.Fprintf(stderr, "benchcompare: go test %s -bench %s: %v\n%s\n", b.pkg, b.pattern, err, tail(out.Bytes(), 30))
			failures = append(failures, b.pattern)
			return err
		}
		return nil
	}

	if want("orders") && gotest(bench{pkg: "./cmd/bazaar/", pattern: "^BenchmarkOrderStorm$", benchtime: "1x"}) == nil {
		m := res["BenchmarkOrderStorm"]
		add("`POST /v1/orders` through `bazaar serve`, 16 clients",
			fmt.Sprintf("%s orders/s, p50 %s ms, p99 %s ms", num(m["orders/s"]), dec(m["p50_ms"]), dec(m["p99_ms"])),
			fmt.Sprintf("pgbench, order row + outbox row in one tx, 16 clients: %s tx/s", num(m["pgbench_tx/s"])),
			ratio(m["ratio"]))
	}
	var xadd32, xadd1 float64
	if want("xadd") || want("relay") {
		var err error
		if xadd32, xadd1, err = redisBaseline(ctx, stderr); err != nil {
			return err
		}
	}
	if want("relay") && gotest(bench{pkg: "./stream/", pattern: *relayPattern, benchtime: relayBenchtime(*relayPattern, *relayEvents), env: []string{fmt.Sprintf("BAZAAR_BENCH_RELAY_EVENTS=%d", *relayEvents)}}) == nil {
		best, name := 0.0, ""
		for n, m := range res {
			if strings.HasPrefix(n, "BenchmarkRelay") && m["events/s"] > best {
				best, name = m["events/s"], n
			}
		}
		add(fmt.Sprintf("relay draining a %s-event backlog (`%s`)", num(float64(*relayEvents)), name),
			fmt.Sprintf("%s events/s", num(best)),
			fmt.Sprintf("`redis-benchmark` XADD pipelined 32: %s/s; unpipelined: %s/s", num(xadd32), num(xadd1)),
			ratio(best/xadd32)+" / "+ratio(best/xadd1))
	}
	if want("tasks") && gotest(bench{pkg: "./workers/", pattern: "^BenchmarkTaskThroughput$", benchtime: fmt.Sprintf("%dx", *tasks)}) == nil {
		m := res["BenchmarkTaskThroughput"]
		add("no-op task throughput (`BenchmarkTaskThroughput`)",
			fmt.Sprintf("%s tasks/s (10 min retention: %s/s)", num(m["tasks/s"]), num(m["retained_tasks/s"])),
			fmt.Sprintf("bare asynq server, same run: one queue %s tasks/s; Bazaar's queues and weights %s tasks/s", num(m["bare_tasks/s"]), num(m["bare_queues_tasks/s"])),
			ratio(m["ratio"])+" / "+ratio(m["queues_ratio"]))
	}
	if want("latency") && gotest(bench{pkg: "./stream/", pattern: "^Benchmark(Commit|IdlePoll|.*Latency)", benchtime: "2000x"}) == nil {
		for _, n := range sortedNames(res, func(n string) bool {
			return strings.HasPrefix(n, "BenchmarkCommit") || strings.HasPrefix(n, "BenchmarkIdlePoll") || strings.Contains(n, "Latency")
		}) {
			add("stream `"+n+"`", metrics(res[n]), "—", "—")
		}
	}
	if want("latency") && gotest(bench{pkg: "./cmd/bazaar/", pattern: "^BenchmarkCommitToHandlerLatency$", benchtime: "1x"}) == nil {
		for _, n := range sortedNames(res, func(n string) bool { return strings.HasPrefix(n, "BenchmarkCommitToHandlerLatency") }) {
			m := res[n]
			add(fmt.Sprintf("commit → handler / SSE client, relay in its own process (`%s`)", n),
				fmt.Sprintf("%s orders/s; handler p50 %s ms, p99 %s ms; SSE p50 %s ms, p99 %s ms", num(m["orders/s"]),
					dec(m["handler_p50_ms"]), dec(m["handler_p99_ms"]), dec(m["sse_p50_ms"]), dec(m["sse_p99_ms"])),
				"—", "—")
		}
	}
	if want("sse") && gotest(bench{pkg: "./api/", pattern: "^BenchmarkSSELoad$", benchtime: "1x"}) == nil {
		m := res["BenchmarkSSELoad"]
		add("SSE, 5,000 clients, marketplace mix",
			fmt.Sprintf("p50 %s ms, p99 %s ms, %s KiB/conn", dec(m["p50-ms"]), dec(m["p99-ms"]), dec(m["rss-B/conn"]/1024)), "—", "—")
	}
	if want("invoicing") && gotest(bench{pkg: "./workers/invoicing/", pattern: "^BenchmarkInvoiceRun$", benchtime: "1x"}) == nil {
		accounts := 10_000.0
		if v, err := strconv.Atoi(os.Getenv("BENCH_INVOICE_ACCOUNTS")); err == nil && v > 0 {
			accounts = float64(v)
		}
		m := res["BenchmarkInvoiceRun"]
		perAccount := "—"
		if m["run-s"] > 0 {
			perAccount = num(accounts / m["run-s"])
		}
		add(fmt.Sprintf("invoicing, %s accounts", num(accounts)),
			fmt.Sprintf("%s accounts/s, %s invoices/s, peak heap %s MB", perAccount, num(m["invoices/s"]), dec(m["peak-heap-MB"])), "—", "—")
	}

	if want("fairness") && gotest(bench{pkg: "./workers/", pattern: "^BenchmarkFairnessFlood$", benchtime: "1x", env: []string{fmt.Sprintf("BAZAAR_BENCH_FLOOD=%d", *flood)}}) == nil {
		for _, n := range sortedNames(res, func(n string) bool { return strings.HasPrefix(n, "BenchmarkFairnessFlood") }) {
			m := res[n]
			add(fmt.Sprintf("small sellers' commit → order.confirmed during a %s-order flood (`%s`)", num(float64(*flood)), n),
				fmt.Sprintf("p50 %s s, p99 %s s (idle p99 %s s); big seller %s orders/s", dec(m["flood_p50_s"]), dec(m["flood_p99_s"]), dec(m["idle_p99_s"]), num(m["big_flood_orders/s"])),
				fmt.Sprintf("big seller alone: %s orders/s", num(m["big_alone_orders/s"])),
				"p99 "+ratio(m["p99_ratio"])+" of idle / big "+ratio(m["big_throughput_ratio"]))
		}
	}

	load := ""
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		load = ", load average " + strings.Join(strings.Fields(string(b))[:3], " ")
	}
	fmt.Fprintf(stdout, "\n| path | Bazaar | the machine's own limit, same run | ratio |\n| --- | --- | --- | --- |\n")
	for _, r := range rows {
		fmt.Fprintf(stdout, "| %s | %s | %s | %s |\n", r[0], r[1], r[2], r[3])
	}
	fmt.Fprintf(stdout, "\n%d rows in %s%s\n", len(rows), time.Since(start).Round(time.Second), load)
	if len(failures) > 0 {
		return fmt.Errorf("failed: %s (their output is above)", strings.Join(failures, ", "))
	}
	return nil
}

// relayBenchtime is one iteration for BenchmarkRelayDrain, which drains a
// whole backlog per iteration, and one event per iteration otherwise.
func relayBenchtime(pattern string, events int) string {
	if strings.Contains(pattern, "RelayDrain") {
		return "1x"
	}
	return fmt.Sprintf("%dx", events)
}

var rpsLine = regexp.MustCompile(`([0-9.]+) requests per second`)

// redisBaseline starts a redis-server of its own (no persistence) and
// runs redis-benchmark's XADD against it, pipelined 32 deep and not.
func redisBaseline(ctx context.Context, stderr io.Writer) (pipelined, single float64, err error) {
	for _, bin := range []string{"redis-server", "redis-benchmark"} {
		if _, err := exec.LookPath(bin); err != nil {
			return 0, 0, fmt.Errorf("%s is not installed (Debian: redis-server, redis-tools)", bin)
		}
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return 0, 0, err
	}
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	_ = ln.Close()
	dir, err := os.MkdirTemp("", "benchcompare-redis-")
	if err != nil {
		return 0, 0, err
	}
	defer os.RemoveAll(dir)
	//nolint:gosec // a port and a directory this program picked
	srv := exec.CommandContext(ctx, "redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir)
	if err := srv.Start(); err != nil {
		return 0, 0, fmt.Errorf("redis-server: %w", err)
	}
	defer func() { _ = srv.Process.Kill(); _ = srv.Wait() }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		d := net.Dialer{Timeout: 100 * time.Millisecond}
		c, err := d.DialContext(ctx, "tcp", "127.0.0.1:"+port)
		if err == nil {
			_ = c.Close()
			break
		}
		if time.Now().After(deadline) {
			return 0, 0, errors.New("redis-server did not start")
		}
		time.Sleep(50 * time.Millisecond)
	}
	xadd := func(n, pipeline int) (float64, error) {
		fmt.Fprintf(stderr, "benchcompare: redis-benchmark XADD -P %d\n", pipeline)
		//nolint:gosec // the port of the server this program started
		out, err := exec.CommandContext(ctx, "redis-benchmark", "-p", port, "-q", "-n", strconv.Itoa(n), "-P", strconv.Itoa(pipeline),
			"XADD", "benchcompare:s", "MAXLEN", "~", "1000000", "*", "f", "v").CombinedOutput()
		if err != nil {
			return 0, fmt.Errorf("redis-benchmark: %w: %s", err, out)
		}
		// -q prints progress with carriage returns and the result last.
		m := rpsLine.FindAllSubmatch(out, -1)
		if m == nil {
			return 0, fmt.Errorf("redis-benchmark printed no rate: %s", out)
		}
		return strconv.ParseFloat(string(m[len(m)-1][1]), 64)
	}
	if pipelined, err = xadd(1_000_000, 32); err != nil {
		return 0, 0, err
	}
	if single, err = xadd(200_000, 1); err != nil {
		return 0, 0, err
	}
	return pipelined, single, nil
}

func sortedNames(r result, keep func(string) bool) []string {
	var out []string
	for _, n := range slices.Sorted(maps.Keys(r)) {
		if keep(n) {
			out = append(out, n)
		}
	}
	return out
}

// metrics prints a benchmark's custom metrics (not ns/op, B/op, allocs/op).
func metrics(m map[string]float64) string {
	var parts []string
	for _, u := range slices.Sorted(maps.Keys(m)) {
		if u == "B/op" || u == "allocs/op" {
			continue
		}
		v := m[u]
		if u == "ns/op" {
			parts = append(parts, dec(v/1e6)+" ms/op")
			continue
		}
		parts = append(parts, dec(v)+" "+u)
	}
	return strings.Join(parts, ", ")
}

// num prints a whole number with thousands separators.
func num(v float64) string {
	s := strconv.FormatInt(int64(v+0.5), 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func dec(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

func ratio(v float64) string {
	if v == 0 {
		return "—"
	}
	return strconv.FormatFloat(v, 'f', 2, 64) + "×"
}

func tail(b []byte, lines int) string {
	all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(all[max(0, len(all)-lines):], "\n")
}
