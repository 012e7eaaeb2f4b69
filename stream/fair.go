package stream

import "sort"

// FairKey is the unit of fairness of an event: its seller, or for work
// without a seller (users, announcements) its domain ("-user", "-system"),
// so a burst of either is one tenant among the sellers and neither starves
// the other.
func FairKey(env Envelope) string {
	if env.Seller != "" {
		return env.Seller
	}
	return "-" + DomainOf(env.Type)
}

// fairOrder reorders the items of one lane round robin by FairKey: the
// first item of every tenant, then the second of every tenant, and so on,
// so a tenant with a flood in the batch does not make the others' items
// wait behind all of its own. Items of one subject keep their order: an
// item never gets an earlier round than the item of its subject before it,
// and the sort is stable.
func fairOrder(items []*item) {
	if len(items) < 3 {
		return
	}
	rounds := make(map[*item]int, len(items))
	perKey := make(map[string]int)
	lastOfSubject := make(map[string]int)
	for _, it := range items {
		k := FairKey(it.env)
		round := perKey[k]
		perKey[k]++
		if prev, ok := lastOfSubject[it.env.Subject]; ok && round < prev {
			round = prev
		}
		lastOfSubject[it.env.Subject] = round
		rounds[it] = round
	}
	if len(perKey) < 2 {
		return
	}
	sort.SliceStable(items, func(i, j int) bool { return rounds[items[i]] < rounds[items[j]] })
}
