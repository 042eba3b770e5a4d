package qcow2

import "container/list"

// table is one cached metadata cluster: an L2 table or a refcount block.
type table struct {
	off   uint64
	buf   []byte
	dirty bool
	elem  *list.Element
}

// tableCache is a small LRU of metadata clusters. Eviction of dirty tables
// is done by the Image, which knows the write ordering rules.
type tableCache struct {
	max int
	m   map[uint64]*table
	lru *list.List // front is most recently used
}

func newTableCache(max int) *tableCache {
	if max < 4 {
		max = 4
	}
	return &tableCache{max: max, m: map[uint64]*table{}, lru: list.New()}
}

func (c *tableCache) get(off uint64) *table {
	t := c.m[off]
	if t != nil {
		c.lru.MoveToFront(t.elem)
	}
	return t
}

func (c *tableCache) add(t *table) {
	t.elem = c.lru.PushFront(t)
	c.m[t.off] = t
}

// victim returns the least recently used table when the cache is full.
func (c *tableCache) victim() *table {
	if len(c.m) < c.max {
		return nil
	}
	e := c.lru.Back()
	if e == nil {
		return nil
	}
	return e.Value.(*table)
}

func (c *tableCache) remove(t *table) {
	c.lru.Remove(t.elem)
	delete(c.m, t.off)
}

// dirtyTables returns every dirty table.
func (c *tableCache) dirtyTables() []*table {
	var out []*table
	for e := c.lru.Front(); e != nil; e = e.Next() {
		if t := e.Value.(*table); t.dirty {
			out = append(out, t)
		}
	}
	return out
}
