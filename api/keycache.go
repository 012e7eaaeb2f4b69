package api

import (
	"sync"
	"time"

	"github.com/bazaarhq/bazaar/sql/store"
)

// keyCacheTTL is how long an API key found by its secret is believed
// without asking PostgreSQL again. Revoking a key clears the cache of the
// process that revokes it at once, and of every other process when the
// revocation message reaches it (revoke.go); keyCacheTTL bounds the wait
// only when that message is lost.
const keyCacheTTL = 2 * time.Second

// keyCacheMax bounds the entries kept; past it the cache starts afresh,
// so a flood of distinct valid keys cannot grow it without bound.
const keyCacheMax = 10_000

// keyCache holds active API keys by the SHA-256 of their secret. Only
// found keys are kept: an unknown secret is looked up every time, under
// the auth-failure limit.
type keyCache struct {
	mu sync.Mutex
	// gen counts the clears: a lookup that began before a clear must not
	// put back what the clear removed.
	gen  uint64
	keys map[[32]byte]cachedKey
}

type cachedKey struct {
	key   store.APIKey
	until time.Time
}

// get returns the key of hash if it was found less than keyCacheTTL ago,
// and the generation to hand to put after a lookup otherwise.
func (k *keyCache) get(hash [32]byte) (store.APIKey, uint64, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	e, ok := k.keys[hash]
	if !ok || time.Now().After(e.until) {
		return store.APIKey{}, k.gen, false
	}
	return e.key, k.gen, true
}

// put keeps key, looked up since get returned gen, unless the cache was
// cleared meanwhile.
func (k *keyCache) put(hash [32]byte, key store.APIKey, gen uint64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if gen != k.gen {
		return
	}
	if k.keys == nil || len(k.keys) >= keyCacheMax {
		k.keys = map[[32]byte]cachedKey{}
	}
	k.keys[hash] = cachedKey{key: key, until: time.Now().Add(keyCacheTTL)}
}

// clear forgets every key: a key was revoked, here or on another process.
func (k *keyCache) clear() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.gen++
	k.keys = nil
}
