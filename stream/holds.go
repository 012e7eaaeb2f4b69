package stream

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/bazaarhq/bazaar/sql/store"
)

// A paused seller's events are held back per consumer group: each group
// moves the seller's entries, in the order it reads them, to a parked
// stream of its own for the seller (bazaar:parked:{<seller>}:<group>) and
// acknowledges them on the domain stream, so nothing else waits behind
// them and no delivery is spent. The seller's hold (bazaar:hold:{<seller>},
// a hash) says paused or draining; the braces keep both keys of a seller
// in one Redis Cluster slot, so one script checks the hold and parks the
// entry atomically.
//
// On resume the hold becomes draining: each group works through its parked
// stream in order while new entries of the seller keep going to the end of
// it, and the last entry deleted from it hands the seller back to the live
// read. An entry therefore never overtakes an older one of its seller.
//
// PostgreSQL (sellers.paused_at) is the truth; the API writes only there.
// Every Groups copies it to Redis every PauseSync, with the seller's
// pause_version, so a slow process never undoes a newer change.

// Hold states.
const (
	holdPaused   = "paused"
	holdDraining = "draining"
	holdRunning  = "running"
)

// Parked entry fields added beside the original entry's fields.
const (
	fieldParkedStream  = "parked_stream"
	fieldParkedEntryID = "parked_entry_id"
)

// holdTombstone is how long a resumed seller's hold stays as "running",
// with its version, so a pause read before the resume cannot come back.
const holdTombstone = time.Hour

func (n Names) holdKey(seller string) string { return n.prefix() + "hold:{" + seller + "}" }

func (n Names) parkedKey(seller, group string) string {
	return n.prefix() + "parked:{" + seller + "}:" + group
}

func (n Names) drainKey(seller, group string) string {
	return n.prefix() + "drain:{" + seller + "}:" + group
}

// holdsKey is the set of sellers with a hold, for the drainers and the
// metrics to find them.
func (n Names) holdsKey() string { return n.prefix() + "holds" }

// parkScript parks an entry when its seller is held for the group:
// paused, or draining with parked entries of this group still ahead.
// KEYS: hold, parked stream; ARGV: group, then field/value pairs.
var parkScript = redis.NewScript(`
local st = redis.call('HGET', KEYS[1], 'state')
if st ~= 'paused' and st ~= 'draining' then return 0 end
local f = 'parked:' .. ARGV[1]
if st == 'draining' and redis.call('HEXISTS', KEYS[1], f) == 0 then return 0 end
redis.call('XADD', KEYS[2], '*', unpack(ARGV, 2))
redis.call('HSET', KEYS[1], f, 1)
return 1
`)

// pauseScript holds a seller back, unless the hold records a newer version.
// KEYS: hold; ARGV: version, the seller's name (for the metrics).
var pauseScript = redis.NewScript(`
local cur = tonumber(redis.call('HGET', KEYS[1], 'v') or '-1')
if cur >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'state', 'paused', 'v', ARGV[1], 'name', ARGV[2])
redis.call('PERSIST', KEYS[1])
return 1
`)

// resumeScript starts draining a held seller, or lets it run at once when
// no group parked anything. KEYS: hold; ARGV: version, tombstone ms.
var resumeScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local cur = tonumber(redis.call('HGET', KEYS[1], 'v') or '-1')
if cur >= tonumber(ARGV[1]) then return 0 end
for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.sub(f, 1, 7) == 'parked:' then
    redis.call('HSET', KEYS[1], 'state', 'draining', 'v', ARGV[1])
    return 1
  end
end
redis.call('HSET', KEYS[1], 'state', 'running', 'v', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 2
`)

// unparkScript deletes handled entries from a parked stream; the last one
// gone ends the group's part of the drain, and the last group's ends the
// hold. KEYS: hold, parked stream; ARGV: group, tombstone ms, entry ids.
// It returns 2 when the seller runs again, 1 when this group's part is
// done, 0 otherwise.
var unparkScript = redis.NewScript(`
redis.call('XDEL', KEYS[2], unpack(ARGV, 3))
if redis.call('XLEN', KEYS[2]) > 0 then return 0 end
redis.call('DEL', KEYS[2])
redis.call('HDEL', KEYS[1], 'parked:' .. ARGV[1])
if redis.call('HGET', KEYS[1], 'state') ~= 'draining' then return 1 end
for _, f in ipairs(redis.call('HKEYS', KEYS[1])) do
  if string.sub(f, 1, 7) == 'parked:' then return 1 end
end
redis.call('HSET', KEYS[1], 'state', 'running')
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 2
`)

// park moves the entries of held sellers out of the batch: they go to the
// sellers' parked streams and count as handled here. Entries without a
// seller are never held.
func (r *runner) park(ctx context.Context, stream string, items []*item) {
	var held []*item
	for _, it := range items {
		if it.run && it.env.Seller != "" {
			held = append(held, it)
		}
	}
	r.parkEach(ctx, stream, held, parkScript, "check seller hold")
}

// parkEach runs script (parkScript or deferScript) for each of items, in
// their order, in one pipeline, and reads the answers: a parked entry
// counts as handled here. It returns how many were parked.
func (r *runner) parkEach(ctx context.Context, stream string, items []*item, script *redis.Script, what string) int {
	if len(items) == 0 {
		return 0
	}
	names := r.g.cfg.Names
	cmds := make([]*redis.Cmd, len(items))
	pipe := r.rdb().Pipeline()
	for i, it := range items {
		keys := []string{names.holdKey(it.env.Seller), names.parkedKey(it.env.Seller, r.sub.Group)}
		cmds[i] = script.Eval(ctx, pipe, keys, r.parkedArgs(stream, it)...)
	}
	_, _ = pipe.Exec(ctx) // each command's error is read below
	parked := 0
	for i, it := range items {
		n, err := cmds[i].Int()
		switch {
		case err != nil:
			// Not knowing whether the seller is held, the entry is not
			// run (a later entry of its seller may be parked already); it
			// stays pending and comes back after the visibility timeout.
			it.run, it.verdict, it.err = false, leave, fmt.Errorf("%s: %w", what, err)
			r.log.WarnContext(ctx, what+"; the event waits for the visibility timeout",
				"event_id", it.env.ID, "seller", it.env.Seller, "err", err)
		case n == 1:
			it.run, it.verdict = false, ack
			parked++
		}
	}
	return parked
}

// parkedArgs are a parking script's ARGV for it: the group, then the
// entry's fields with where it came from.
func (r *runner) parkedArgs(stream string, it *item) []any {
	args := make([]any, 0, 2*len(it.msg.Values)+5)
	args = append(args, r.sub.Group)
	for k, v := range it.msg.Values {
		if k == fieldParkedStream || k == fieldParkedEntryID {
			continue
		}
		args = append(args, k, v)
	}
	return append(args, fieldParkedStream, stream, fieldParkedEntryID, it.msg.ID)
}

// share is how many entries of one seller a batch runs while others wait.
func (r *runner) share() int { return cmp.Or(r.g.cfg.SellerShare, r.sub.Concurrency) }

// deferScript parks an entry of a seller over its share of a batch and
// makes the seller's hold draining, so the group works through its parked
// stream in order while the seller's later entries queue behind them (see
// parkScript). A paused hold stays paused. KEYS: hold, parked stream;
// ARGV: group, then field/value pairs.
var deferScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'state') ~= 'paused' then
  redis.call('HSET', KEYS[1], 'state', 'draining')
end
redis.call('PERSIST', KEYS[1])
redis.call('XADD', KEYS[2], '*', unpack(ARGV, 2))
redis.call('HSET', KEYS[1], 'parked:' .. ARGV[1], 1)
return 1
`)

// deferShare parks, in stream order, each seller's entries beyond the
// first SellerShare of a batch that holds more than one tenant's work or
// that is full (more may wait behind it): the others' entries run now,
// the seller's excess a batch at a time from its parked stream
// (drainHeld), and nothing of it is lost or reordered. Entries without a
// seller are never deferred: they have no hold.
func (r *runner) deferShare(ctx context.Context, stream string, items []*item, full bool) {
	share := r.share()
	if r.g.cfg.DisableFairness || len(items) <= share {
		return
	}
	if !full {
		tenants := map[string]bool{}
		for _, it := range items {
			if it.run {
				tenants[FairKey(it.env)] = true
			}
		}
		if len(tenants) < 2 {
			return // alone and caught up, a seller gets the whole group
		}
	}
	seen := map[string]int{}
	var over []*item
	var sellers []any
	for _, it := range items {
		if !it.run || it.env.Seller == "" {
			continue
		}
		if seen[it.env.Seller]++; seen[it.env.Seller] <= share {
			continue
		}
		if seen[it.env.Seller] == share+1 {
			sellers = append(sellers, it.env.Seller)
		}
		over = append(over, it)
	}
	if len(over) == 0 {
		return
	}
	// Listed before they park, so a drainer finds every deferred seller.
	if err := r.rdb().SAdd(ctx, r.g.cfg.Names.holdsKey(), sellers...).Err(); err != nil {
		r.log.WarnContext(ctx, "list deferred sellers; their events run now", "err", err)
		return
	}
	r.g.tel.deferred(r.sub.Group, r.parkEach(ctx, stream, over, deferScript, "defer a seller's entry"))
}

// drainHeld works through the parked entries of resumed and deferred
// sellers for this group, in order, one batch per seller per call, so the
// live read between two calls keeps the other sellers' wait to about a
// batch. It reports whether a seller has more parked entries waiting.
func (r *runner) drainHeld(loopCtx, handlerCtx context.Context) (more bool) {
	names := r.g.cfg.Names
	sellers, err := r.rdb().SMembers(loopCtx, names.holdsKey()).Result()
	if err != nil || len(sellers) == 0 {
		return false
	}
	for _, seller := range sellers {
		if loopCtx.Err() != nil {
			return false
		}
		st, err := r.rdb().HMGet(loopCtx, names.holdKey(seller), "state", "parked:"+r.sub.Group).Result()
		if err != nil {
			continue
		}
		state, _ := st[0].(string)
		if state == "" || state == holdRunning {
			// Gone or resumed with nothing left: no longer a hold.
			_ = r.rdb().SRem(loopCtx, names.holdsKey(), seller).Err()
			continue
		}
		if state != holdDraining || st[1] == nil {
			continue
		}
		lock := names.drainKey(seller, r.sub.Group)
		got, err := r.rdb().SetNX(loopCtx, lock, r.consumer(), r.g.cfg.LeaseTTL).Result()
		if err != nil || !got {
			continue // another consumer of the group drains it
		}
		if r.drainSeller(loopCtx, handlerCtx, seller) {
			more = true
		}
		_ = releaseLeaseScript.Run(context.WithoutCancel(loopCtx), r.rdb(), []string{lock}, r.consumer()).Err()
	}
	return more
}

// drainSeller handles a batch of the parked entries of one seller, oldest
// first, and reports whether more wait behind it. It stops early at an
// entry that cannot be finished: that one is tried again on a later call.
func (r *runner) drainSeller(loopCtx, handlerCtx context.Context, seller string) bool {
	names := r.g.cfg.Names
	parked := names.parkedKey(seller, r.sub.Group)
	lock := names.drainKey(seller, r.sub.Group)
	// A batch of a seller's share, not a whole read's worth: the others'
	// entries read next wait for this batch.
	msgs, err := r.rdb().XRangeN(loopCtx, parked, "-", "+", int64(r.share())).Result()
	if err != nil || len(msgs) == 0 {
		return false
	}
	items := make([]*item, 0, len(msgs))
	for _, m := range msgs {
		origin, _ := m.Values[fieldParkedStream].(string)
		originID, _ := m.Values[fieldParkedEntryID].(string)
		it := &item{stream: origin, msg: redis.XMessage{ID: originID, Values: m.Values}, deliv: 1, run: true}
		env, err := DecodeEnvelope(m.Values)
		if err != nil {
			it.run, it.verdict, it.err = false, dead, err
		}
		it.env = env
		items = append(items, it)
	}
	var toRun []*item
	for _, it := range items {
		if it.run {
			toRun = append(toRun, it)
		}
	}
	r.runAll(handlerCtx, toRun, true)
	sctx := context.WithoutCancel(loopCtx)
	pipe := r.rdb().Pipeline()
	done := make([]any, 0, len(items))
	stop := false
	for i, it := range items {
		switch it.verdict {
		case dead:
			r.queueDead(sctx, pipe, it)
			done = append(done, msgs[i].ID)
		case ack:
			done = append(done, msgs[i].ID)
		default:
			stop = true
		}
	}
	if len(done) > 0 {
		unpark := unparkScript.Eval(sctx, pipe, []string{names.holdKey(seller), parked},
			append([]any{r.sub.Group, holdTombstone.Milliseconds()}, done...)...)
		pipe.PExpire(sctx, lock, r.g.cfg.LeaseTTL)
		if _, err := pipe.Exec(sctx); err != nil {
			r.log.Warn("delete drained entries; they will be handled again", "seller", seller, "err", err)
			return false
		}
		if n, _ := unpark.Int(); n > 0 {
			if n == 2 {
				_ = r.rdb().SRem(sctx, names.holdsKey(), seller).Err()
				r.log.Info("parked events of seller handled in every group", "seller", seller)
			}
			return false
		}
	}
	// Here the parked stream still holds entries (unpark said so).
	return !stop && len(done) > 0
}

// syncPauses copies the pause state of sellers from PostgreSQL to their
// holds in Redis.
func (g *Groups) syncPauses(ctx context.Context) error {
	names := g.cfg.Names
	members, err := g.cfg.Redis.SMembers(ctx, names.holdsKey()).Result()
	if err != nil {
		return fmt.Errorf("list holds: %w", err)
	}
	held := make([]uuid.UUID, 0, len(members))
	for _, m := range members {
		if id, err := uuid.Parse(m); err == nil {
			held = append(held, id)
		}
	}
	states, err := store.PauseStates(ctx, g.cfg.DB, held)
	if err != nil {
		return err
	}
	for _, s := range states {
		key := names.holdKey(s.SellerID.String())
		v := strconv.FormatInt(s.Version, 10)
		if s.Paused {
			name := s.Name
			if len(name) > 64 {
				name = name[:64]
			}
			n, err := pauseScript.Run(ctx, g.cfg.Redis, []string{key}, v, name).Int()
			if err != nil {
				return fmt.Errorf("hold seller %s: %w", s.SellerID, err)
			}
			if err := g.cfg.Redis.SAdd(ctx, names.holdsKey(), s.SellerID.String()).Err(); err != nil {
				return fmt.Errorf("hold seller %s: %w", s.SellerID, err)
			}
			if n == 1 {
				g.log.Info("seller paused: holding its events", "seller", s.SellerID)
			}
			continue
		}
		n, err := resumeScript.Run(ctx, g.cfg.Redis, []string{key}, v, holdTombstone.Milliseconds()).Int()
		if err != nil {
			return fmt.Errorf("resume seller %s: %w", s.SellerID, err)
		}
		if n > 0 {
			g.log.Info("seller resumed: handling its held events", "seller", s.SellerID, "draining", n == 1)
		}
	}
	return nil
}

// runPauseSync keeps the holds in step with PostgreSQL until ctx ends.
func (g *Groups) runPauseSync(ctx context.Context) {
	failures := 0
	for {
		if err := g.syncPauses(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			failures++
			if failures&(failures-1) == 0 {
				g.log.Warn("sync seller pauses; will retry", "err", err, "attempt", failures)
			}
		} else {
			failures = 0
		}
		if !waitFor(ctx, g.cfg.PauseSync) {
			return
		}
	}
}

// maxHeldSeries bounds the per-seller series of the hold metrics; further
// sellers are summed under seller="other".
const maxHeldSeries = 50

// holdsCollector reports the held sellers on each scrape.
type holdsCollector struct {
	rdb    redis.UniversalClient
	names  Names
	groups []string
	paused *prometheus.Desc
	held   *prometheus.Desc
}

func newHoldsCollector(rdb redis.UniversalClient, names Names, groups []string) *holdsCollector {
	return &holdsCollector{
		rdb: rdb, names: names, groups: groups,
		paused: prometheus.NewDesc("bazaar_seller_paused",
			"Paused sellers by name (at most 50 series; the rest are summed under seller=\"other\").", []string{"seller"}, nil),
		held: prometheus.NewDesc("bazaar_seller_held_events",
			"Events of a paused, resuming or deferred seller waiting in its parked streams, by seller and consumer group.", []string{"seller", "group"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *holdsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.paused
	ch <- c.held
}

// Collect implements prometheus.Collector.
func (c *holdsCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	sellers, err := c.rdb.SMembers(ctx, c.names.holdsKey()).Result()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.paused, err)
		return
	}
	sort.Strings(sellers)
	pausedOther := 0.0
	heldOther := map[string]float64{}
	// Two sellers may share a name: their series add up.
	paused := map[string]float64{}
	held := map[[2]string]float64{}
	for i, s := range sellers {
		st, err := c.rdb.HMGet(ctx, c.names.holdKey(s), "state", "name").Result()
		if err != nil {
			continue
		}
		state, _ := st[0].(string)
		// Labelled by name: label values are never ids.
		label, _ := st[1].(string)
		if label == "" {
			label = "unnamed"
		}
		if i >= maxHeldSeries {
			label = "other"
		}
		if state == holdPaused {
			if label == "other" {
				pausedOther++
			} else {
				paused[label]++
			}
		}
		for _, g := range c.groups {
			n, err := c.rdb.XLen(ctx, c.names.parkedKey(s, g)).Result()
			if err != nil || n == 0 {
				continue
			}
			if label == "other" {
				heldOther[g] += float64(n)
			} else {
				held[[2]string{label, g}] += float64(n)
			}
		}
	}
	for name, n := range paused {
		ch <- prometheus.MustNewConstMetric(c.paused, prometheus.GaugeValue, n, name)
	}
	for k, n := range held {
		ch <- prometheus.MustNewConstMetric(c.held, prometheus.GaugeValue, n, k[0], k[1])
	}
	if pausedOther > 0 {
		ch <- prometheus.MustNewConstMetric(c.paused, prometheus.GaugeValue, pausedOther, "other")
	}
	for g, n := range heldOther {
		ch <- prometheus.MustNewConstMetric(c.held, prometheus.GaugeValue, n, "other", g)
	}
}

// SellerHold is a seller's hold as the consumer groups apply it.
type SellerHold struct {
	// State is "paused" (the groups park the seller's events), "draining"
	// (resumed, or over its share of a batch: the groups work through what
	// they parked) or "" and
	// "running" (nothing held).
	State string
	// Held counts the seller's parked events per consumer group that has
	// any.
	Held map[string]int64
}

// SellerHold reads how the consumer groups hold seller back: the state
// they last copied from PostgreSQL (within PauseSync of a pause or resume)
// and the events each group has parked.
func (a *Admin) SellerHold(ctx context.Context, seller string) (SellerHold, error) {
	state, err := a.cfg.Redis.HGet(ctx, a.cfg.Names.holdKey(seller), "state").Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return SellerHold{}, fmt.Errorf("hold of seller %s: %w", seller, err)
	}
	groups, err := a.Groups(ctx)
	if err != nil {
		return SellerHold{}, err
	}
	h := SellerHold{State: state, Held: map[string]int64{}}
	for _, g := range groups {
		n, err := a.cfg.Redis.XLen(ctx, a.cfg.Names.parkedKey(seller, g)).Result()
		if err != nil && !isMissingKey(err) {
			return SellerHold{}, fmt.Errorf("held events of seller %s in %s: %w", seller, g, err)
		}
		if n > 0 {
			h.Held[g] = n
		}
	}
	return h, nil
}
